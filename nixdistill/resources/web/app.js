// The page `nixdistill export --format web` writes: a Piper voice, offline in the browser.
//
// text --(piper_phonemize WASM, in piper-tts-web's worker)--> phoneme ids per sentence
//      --(onnxruntime-web, WASM backend: the voice graph, one run per sentence)--> samples
//
// Every file is served from this folder (no CDN). window.piperPage is the page's API:
//   await piperPage.ready                      voices.json read, first voice listed
//   await piperPage.loadVoice(url)             fetch + session; the phonemizer starts
//   await piperPage.phonemize(text)            {sentences: [[id, ...], ...], ids, raw}
//   await piperPage.speak(text, options)       {samples: Float32Array, sample_rate, ids,
//                                               sentences, phonemize_ms, synth_ms,
//                                               first_audio_ms, seconds}
//     options: noise_scale, length_scale, noise_w (default: the voice's "inference"),
//              normalize (default true: peak-normalise each sentence, as Piper does),
//              onChunk(samples, sentence_index) called as each sentence is ready.
//   piperPage.last, piperPage.timings          the last result; load and click timings (ms)
"use strict";

const base = new URL(".", location.href).href;
ort.env.wasm.wasmPaths = base + "ort/";
// A plain static server sends no COOP/COEP headers, so there is no SharedArrayBuffer: 1 thread.
ort.env.wasm.numThreads = 1;

const PIPER_DEFAULT_SCALES = { noise_scale: 0.667, length_scale: 1.0, noise_w: 0.8 };
const BOS = "^", EOS = "$", PAD = "_";

const $ = (id) => document.getElementById(id);
const log = (message) => { $("log").textContent += message + "\n"; };
const ms = (t) => `${t.toFixed(0)} ms`;

const piperPage = window.piperPage = {
  voices: [], url: null, config: null, session: null, last: null, timings: {},
};

// --- phonemizer: piper-tts-web's module worker around piper_phonemize.wasm + .data ---------
let worker = null, workerReady = null, queue = Promise.resolve();

function startPhonemizer() {
  if (workerReady) return workerReady;
  worker = new Worker(base + "piper/PhonemizeWebWorker.js", { type: "module" });
  workerReady = new Promise((resolve, reject) => {
    worker.onerror = (e) => reject(new Error("phonemizer worker: " + e.message));
    worker.onmessage = () => resolve();   // the answer to loadModule
    worker.postMessage({ type: "constructor", data: { basePath: base + "piper/" } });
    worker.postMessage({ type: "loadModule" });
  });
  return workerReady;
}

// One request at a time: the worker answers through a single callback.
function phonemizeRaw(text, config) {
  const job = queue.then(startPhonemizer).then(() => new Promise((resolve) => {
    worker.onmessage = ({ data }) => resolve(data);
    worker.postMessage({ type: "phonemize", data: [text, [config]] });
  }));
  queue = job.catch(() => {});
  return job;
}

// Piper's ids of one sentence from its phoneme symbols: ^ _ p1 _ p2 _ ... pN _ $.
function sentenceIds(symbols, idMap) {
  const ids = [...idMap[BOS], ...idMap[PAD]];
  for (const s of symbols) {
    if (!(s in idMap)) { console.warn("phoneme not in the voice's map:", s); continue; }
    ids.push(...idMap[s], ...idMap[PAD]);
  }
  ids.push(...idMap[EOS]);
  return ids;
}

// piper_phonemize numbers the phonemes of all sentences with Piper's default espeak map, as one
// list "^ _ .. $ ^ _ .. $"; the worker maps the ids back to symbols through the voice's map
// (the same numbering for every voice on Piper's espeak map). We split at ^ and $ and renumber
// each sentence with the voice's map.
piperPage.phonemize = async (text, config) => {
  config = config || piperPage.config;
  if (!text.trim()) return { raw: null, sentences: [], ids: [] };
  const raw = await phonemizeRaw(text, config);
  const sentences = [];
  let current = null;
  for (const symbol of raw.phonemes) {
    if (symbol === BOS) current = [];
    else if (symbol === EOS) {
      if (current && current.length) sentences.push(sentenceIds(current, config.phoneme_id_map));
      current = null;
    } else if (symbol !== PAD && current) current.push(symbol);
  }
  return { raw, sentences, ids: sentences.flat() };
};

// --- voice ---------------------------------------------------------------------------------
piperPage.loadVoice = async (url) => {
  const t0 = performance.now();
  const [config, model] = await Promise.all([
    fetch(url + ".json").then((r) => { if (!r.ok) throw new Error(url + ".json " + r.status); return r.json(); }),
    fetch(url).then((r) => { if (!r.ok) throw new Error(url + " " + r.status); return r.arrayBuffer(); }),
  ]);
  const t1 = performance.now();
  const session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
  const t2 = performance.now();
  await startPhonemizer();
  const t3 = performance.now();
  Object.assign(piperPage, { url, config, session });
  piperPage.timings.load = { fetch_ms: t1 - t0, session_ms: t2 - t1, phonemizer_ms: t3 - t2,
                             model_bytes: model.byteLength };
  $("voice-info").textContent = `${config.dataset || url} · ${config.audio.sample_rate} Hz · ` +
    `${(model.byteLength / 1e6).toFixed(2)} MB`;
  log(`loaded ${url}: fetch ${ms(t1 - t0)}, session ${ms(t2 - t1)}, phonemizer ${ms(t3 - t2)}`);
};

async function runGraph(ids, scales) {
  const session = piperPage.session;
  const feeds = {
    input: new ort.Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
    input_lengths: new ort.Tensor("int64", BigInt64Array.from([BigInt(ids.length)]), [1]),
    scales: new ort.Tensor("float32", Float32Array.from(scales), [3]),
  };
  if (session.inputNames.includes("sid")) {
    feeds.sid = new ort.Tensor("int64", BigInt64Array.from([0n]), [1]);
  }
  const out = await session.run(feeds);
  return out.output.data;   // Float32Array of [1, 1, T_samples]
}

function finish(samples, normalize) {
  let peak = 0;
  for (const v of samples) peak = Math.max(peak, Math.abs(v));
  const gain = normalize ? (peak > 1e-8 ? 1 / peak : 0) : 1;
  return samples.map((v) => Math.max(-1, Math.min(1, v * gain)));
}

piperPage.speak = async (text, options = {}) => {
  if (!piperPage.session) throw new Error("no voice loaded: call piperPage.loadVoice(url)");
  const config = piperPage.config;
  const inference = { ...PIPER_DEFAULT_SCALES, ...(config.inference || {}) };
  const scales = [options.noise_scale ?? inference.noise_scale,
                  options.length_scale ?? inference.length_scale,
                  options.noise_w ?? inference.noise_w];
  const t0 = performance.now();
  const { ids, sentences } = await piperPage.phonemize(text);
  const t1 = performance.now();
  const chunks = [];
  let firstAudioMs = null;
  for (const [index, sentence] of sentences.entries()) {   // Piper speaks sentence by sentence
    const chunk = finish(await runGraph(sentence, scales), options.normalize !== false);
    chunks.push(chunk);
    if (firstAudioMs === null) firstAudioMs = performance.now() - t0;
    if (options.onChunk) options.onChunk(chunk, index);
  }
  const t2 = performance.now();
  const samples = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) { samples.set(c, offset); offset += c.length; }
  const sampleRate = config.audio.sample_rate;
  piperPage.last = { ids, sentences, samples, sample_rate: sampleRate, phonemize_ms: t1 - t0,
                     synth_ms: t2 - t1, first_audio_ms: firstAudioMs,
                     seconds: samples.length / sampleRate };
  return piperPage.last;
};

// --- playback: each sentence plays as soon as it is ready; the player holds the whole clip ---
let audioContext = null, playUntil = 0;
function play(samples, sampleRate) {
  audioContext = audioContext || new AudioContext();
  const buffer = audioContext.createBuffer(1, samples.length, sampleRate);
  buffer.copyToChannel(samples, 0);
  const source = audioContext.createBufferSource();
  source.buffer = buffer;
  source.connect(audioContext.destination);
  const at = Math.max(audioContext.currentTime, playUntil);
  source.start(at);
  playUntil = at + buffer.duration;
}

function wavBlob(samples, sampleRate) {   // 16-bit PCM mono
  const bytes = new ArrayBuffer(44 + samples.length * 2), v = new DataView(bytes);
  const ascii = (at, s) => { for (let i = 0; i < s.length; i++) v.setUint8(at + i, s.charCodeAt(i)); };
  ascii(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); ascii(8, "WAVEfmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true); ascii(36, "data");
  v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) v.setInt16(44 + 2 * i, Math.round(samples[i] * 32767), true);
  return new Blob([bytes], { type: "audio/wav" });
}

async function onSpeak() {
  const button = $("speak");
  button.disabled = true;
  try {
    const t0 = performance.now();
    const url = $("voice").value;
    const loading = piperPage.url !== url;
    if (loading) await piperPage.loadVoice(url);
    let firstAudio = null;
    const r = await piperPage.speak($("text").value, {
      onChunk: (chunk) => {
        if (firstAudio === null) firstAudio = performance.now() - t0;
        play(chunk, piperPage.config.audio.sample_rate);
      },
    });
    const audio = $("audio");
    if (audio.src) URL.revokeObjectURL(audio.src);
    audio.src = URL.createObjectURL(wavBlob(r.samples, r.sample_rate));
    piperPage.timings.click_to_first_audio_ms = firstAudio;
    piperPage.timings.click_to_done_ms = performance.now() - t0;
    $("first-audio").textContent = firstAudio === null ? "no audio" :
      `${ms(firstAudio)} after the click` + (loading ? " (includes loading the voice)" : "");
    $("synthesis").textContent = `${ms(r.synth_ms)} for ${r.sentences.length} sentence(s), ` +
      `phonemizer ${ms(r.phonemize_ms)}`;
    $("audio-length").textContent = `${r.seconds.toFixed(2)} s at ${r.sample_rate} Hz ` +
      `(real-time factor ${(r.synth_ms / 1000 / Math.max(r.seconds, 1e-9)).toFixed(3)})`;
  } catch (e) {
    log("error: " + e.message);
    throw e;
  } finally {
    button.disabled = false;
  }
}

piperPage.ready = (async () => {
  const voices = await fetch(base + "voices.json").then((r) => r.json());
  piperPage.voices = voices;
  for (const v of voices) {
    const option = document.createElement("option");
    option.value = v.url;
    option.textContent = `${v.name} (${v.role}${v.int8 ? ", int8" : ""}, ` +
      `${(v.bytes / 1e6).toFixed(2)} MB)`;
    $("voice").appendChild(option);
  }
  $("speak").onclick = onSpeak;
  $("speak").disabled = false;
  return voices;
})();
