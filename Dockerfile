# nixdistill image. CPU by default:
#   docker build -t nixdistill .
# CUDA (any CUDA-enabled PyTorch base image; its torch is kept, never replaced):
#   docker build -t nixdistill:cuda --build-arg BASE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime .
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_CPU_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libsndfile1 espeak-ng \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/nixdistill
COPY . .

# Keep a torch that the base image already has (CUDA bases); otherwise take the CPU build.
RUN python -c "import torch" 2>/dev/null \
 || pip install torch==${TORCH_CPU_VERSION} --index-url https://download.pytorch.org/whl/cpu
RUN pip install ".[piper,eval]"

ENTRYPOINT ["nixdistill"]
CMD ["--help"]
