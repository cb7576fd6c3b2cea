// PitBox push-to-talk (anywidget): hold the button (or the page's hotkey) to speak a command.
//
// While the button is held the page records the browser's microphone (getUserMedia + Web
// Audio: an AudioWorklet, which runs on the audio thread, so a busy page loses no samples;
// a ScriptProcessor, on the page's own thread, only where worklets are missing), as 16 kHz
// mono PCM16 (resampled here by an OfflineAudioContext); on release it
// sends the clip to the kernel as one binary buffer: {type: "clip", rate, samples}. The
// kernel runs the same recogniser as `pitbox voice hear` and sets `heard` and `answer`,
// which this view shows. A clip is cut at `max_s` seconds even if the button is still held.

const RATE = 16000;

// The audio-thread side: posts every block of the microphone to the page, in order; on
// "flush" answers "done" after the blocks before it (messages keep their order).
const TAP = `class PitboxTap extends AudioWorkletProcessor {
  constructor() { super(); this.port.onmessage = (e) => { if (e.data === "flush") this.port.postMessage("done"); }; }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch && ch.length) this.port.postMessage(ch.slice(0));
    return true;
  }
}
registerProcessor("pitbox-tap", PitboxTap);`;

// An AudioWorkletNode passing the microphone's blocks to take(), or null where the browser
// has no worklets (then the ScriptProcessor below does it).
async function tapNode(ctx, take) {
  if (!ctx.audioWorklet || typeof AudioWorkletNode === "undefined") return null;
  const url = URL.createObjectURL(new Blob([TAP], { type: "application/javascript" }));
  try {
    await ctx.audioWorklet.addModule(url);
  } catch (e) {
    return null;
  } finally {
    URL.revokeObjectURL(url);
  }
  const node = new AudioWorkletNode(ctx, "pitbox-tap", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1 });
  let flushed = null;
  node.port.onmessage = (e) => {
    if (e.data === "done") { if (flushed) flushed(); return; }
    take(e.data);
  };
  // every block the audio thread took before now (bounded: a closed context answers nothing)
  node.flush = () => new Promise((resolve) => {
    flushed = resolve;
    node.port.postMessage("flush");
    setTimeout(resolve, 1000);
  });
  return node;
}

async function to16k(chunks, rate) {
  let n = 0;
  for (const c of chunks) n += c.length;
  const all = new Float32Array(n);
  let o = 0;
  for (const c of chunks) { all.set(c, o); o += c.length; }
  if (rate === RATE || n === 0) return all;
  const out = Math.max(1, Math.round(n * RATE / rate));
  const ctx = new OfflineAudioContext(1, out, RATE);
  const buf = ctx.createBuffer(1, n, rate);
  buf.copyToChannel(all, 0);
  const src = ctx.createBufferSource();
  src.buffer = buf;
  src.connect(ctx.destination);
  src.start();
  const r = await ctx.startRendering();
  return r.getChannelData(0);
}

function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "pitbox-talk";
  const btn = document.createElement("button");
  btn.className = "pitbox-talk-button";
  btn.type = "button";
  btn.textContent = "hold to talk";
  btn.title = "hold (or hold the hotkey) and say a command: fuel, delta, last lap, focus on turn 3...";
  const status = document.createElement("span");
  status.className = "pitbox-talk-status";
  status.dataset.state = "idle";
  const heard = document.createElement("span");
  heard.className = "pitbox-talk-heard";
  const answer = document.createElement("span");
  answer.className = "pitbox-talk-answer";
  box.append(btn, status, heard, answer);
  el.appendChild(box);

  let rec = null; // {ctx, stream, node, chunks, n, rate, stopping}
  let held = false;
  let opening = false;

  const show = () => {
    heard.textContent = model.get("heard") ? `heard: ${model.get("heard")}` : "";
    answer.textContent = model.get("answer") || "";
    // who answered: "recorder" (the driver's voice coach, in his ears) or "here" (this page's)
    box.dataset.via = model.get("via") || "";
    answer.title = model.get("via") === "recorder" ? "answered by the driver's voice coach" : "";
    const st = model.get("status");
    if (st) { status.textContent = st; }
  };

  async function start() {
    if (rec || opening) return;
    opening = true;
    try {
      await open();
    } finally {
      opening = false;
    }
  }

  async function open() {
    held = true;
    status.dataset.state = "opening";
    status.textContent = "opening the microphone…";
    // the audio graph first, the microphone last: no sound is lost to setting up
    const ctx = new AudioContext();
    // a context made after the permission prompt may start suspended (the press's user
    // activation has expired): resume it, or no audio would arrive
    if (ctx.state === "suspended") await ctx.resume().catch(() => {});
    const r = { ctx, stream: null, node: null, chunks: [], n: 0, rate: ctx.sampleRate, stopping: false };
    const maxN = model.get("max_s") * ctx.sampleRate;
    const take = (d) => {
      if (r.stopping) return;
      r.chunks.push(d);
      r.n += d.length;
      box.dataset.recordedS = (r.n / r.rate).toFixed(3);
      if (r.n >= maxN) stop();
    };
    let node = await tapNode(ctx, take);
    box.dataset.capture = node ? "worklet" : "script";
    if (!node) {
      node = ctx.createScriptProcessor(4096, 1, 1);
      node.onaudioprocess = (ev) => take(new Float32Array(ev.inputBuffer.getChannelData(0)));
    }
    try {
      r.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    } catch (e) {
      status.dataset.state = "error";
      status.textContent = `no microphone: ${e.message || e}`;
      held = false;
      ctx.close().catch(() => {});
      return;
    }
    r.node = node;
    rec = r;
    ctx.createMediaStreamSource(r.stream).connect(node);
    node.connect(ctx.destination);
    status.dataset.state = "recording";
    status.textContent = "listening…";
    btn.classList.add("pitbox-talk-on");
    if (!held) stop(); // released while the microphone was opening
  }

  async function stop() {
    held = false;
    const r = rec;
    if (!r || r.stopping) return;
    rec = null;
    btn.classList.remove("pitbox-talk-on");
    if (r.node.flush) await r.node.flush();  // the blocks still on their way from the audio thread
    r.stopping = true;
    r.node.disconnect();
    r.stream.getTracks().forEach((t) => t.stop());
    await r.ctx.close();
    const x = await to16k(r.chunks, r.rate);
    const pcm = new Int16Array(x.length);
    for (let i = 0; i < x.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(x[i] * 32767)));
    status.dataset.state = "recognising";
    status.textContent = `recognising ${(x.length / RATE).toFixed(1)} s…`;
    model.send({ type: "clip", rate: RATE, samples: pcm.length }, undefined, [pcm.buffer]);
  }

  btn.addEventListener("pointerdown", (e) => { e.preventDefault(); start(); });
  btn.addEventListener("pointerup", () => stop());
  btn.addEventListener("pointerleave", () => { if (rec) stop(); });
  const key = () => model.get("hotkey");
  const typing = (t) => t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  const onDown = (e) => { if (key() && e.code === key() && !e.repeat && !typing(e.target)) { e.preventDefault(); start(); } };
  const onUp = (e) => { if (key() && e.code === key()) stop(); };
  window.addEventListener("keydown", onDown);
  window.addEventListener("keyup", onUp);
  model.on("change:heard", show);
  model.on("change:answer", show);
  model.on("change:via", show);
  model.on("change:status", () => {
    status.dataset.state = model.get("state") || "idle";
    show();
  });
  model.on("change:seq", () => { box.dataset.seq = String(model.get("seq")); status.dataset.state = "idle"; show(); });
  show();
  const unwatch = watchHearing(model, el, Math.random().toString(36).slice(2));  // hearing.js
  return () => {
    unwatch();
    window.removeEventListener("keydown", onDown);
    window.removeEventListener("keyup", onUp);
    if (rec) stop();
  };
}

export default { render };
