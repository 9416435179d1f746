"""ONNX graphs in onnxruntime, with nothing else imported (no torch, no nixdistill).

Run as a script (``python ort_runner.py SPEC``) it is the child process of the ONNX Runtime
memory measurement (:mod:`nixdistill.benchmark.memory`): it loads the graphs, prints
``ready``, synthesises the given token ids once each and exits, so its RSS is onnxruntime's
alone.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

import numpy as np

READY = "ready"
DETERMINISTIC_SCALES = (0.0, 1.0, 0.0)
"""``[noise_scale, length_scale, noise_w]``: deterministic synthesis; a two-entry ``scales``
input takes the first two."""


def session_options(n_threads: int) -> Any:
    """onnxruntime options for a single-stream latency benchmark at ``n_threads``.

    ``intra_op_num_threads = n`` (parallel work inside one operator), one inter-op thread and
    sequential execution (a TTS graph is a chain; parallel branches only add hand-offs), full
    graph optimisation, and no spin-waiting: by default idle intra-op workers spin between
    operators, and on a machine whose cores are shared (other processes, or torch's own pool
    in an interleaved benchmark) the spinning thread takes the core the working one needs.
    Measured on a loaded 2-core machine, one sentence, best of 5: the two-graph student took
    401 ms at 1 thread, 515 ms at 2 spinning threads and 183 ms at 2 non-spinning threads;
    the Piper joe teacher 795, 921 and 744 ms; ``ORT_PARALLEL`` was slowest for both.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = n_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def make_sessions(graphs: Sequence[str], n_threads: int) -> list[Any]:
    """One CPU session per graph file, each with :func:`session_options`."""
    import onnxruntime as ort

    opts = session_options(n_threads)
    return [ort.InferenceSession(str(g), opts, providers=["CPUExecutionProvider"]) for g in graphs]


def feed_for(ids: Sequence[int]) -> dict[str, np.ndarray]:
    """Named inputs for one sentence: ``input`` [1, T_text], ``input_lengths`` [1], ``sid`` [1]."""
    return {"input": np.asarray([list(ids)], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "sid": np.zeros(1, dtype=np.int64)}


def run_graphs(sessions: Sequence[Any], values: dict[str, np.ndarray]) -> np.ndarray:
    """Run the graphs in order, feeding each by input name from ``values`` (the sentence
    inputs, deterministic ``scales`` and every earlier graph's outputs, e.g. ``z``).

    Returns:
        the last graph's first output (the waveform).
    Raises:
        KeyError: a graph input that nothing provides.
    """
    values = dict(values)
    out: list[np.ndarray] = []
    for sess in sessions:
        feed = {}
        for inp in sess.get_inputs():
            if inp.name == "scales":
                n = inp.shape[0] if isinstance(inp.shape[0], int) else len(DETERMINISTIC_SCALES)
                feed["scales"] = np.asarray(DETERMINISTIC_SCALES[:n], dtype=np.float32)
            else:
                feed[inp.name] = values[inp.name]
        out = sess.run(None, feed)
        values.update({o.name: v for o, v in zip(sess.get_outputs(), out)})
    return out[0]


def _child(spec: dict[str, Any]) -> None:
    sessions = make_sessions(spec["graphs"], int(spec["threads"]))
    feeds = [feed_for(ids) for ids in spec["ids"]]
    print(READY, flush=True)
    for feed in feeds:
        run_graphs(sessions, feed)


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
