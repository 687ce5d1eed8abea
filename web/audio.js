// Microphone capture (AudioWorklet -> 16 kHz PCM frames) and gap-free reply playback.

export const MIC_RATE = 16000;
const MIC_FRAME_SAMPLES = 320; // 20 ms at 16 kHz: small enough for a quick end-of-turn decision

/** Why the microphone could not start, in words a person can act on. */
export function micErrorMessage(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow it in the browser's site settings (the icon left of the address), then press the microphone button again — or type below.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in and try again, or type below.";
    case "NotReadableError":
      return "The microphone is busy or blocked by the system (another app may be using it).";
    case "InsecureContext":
      return "The microphone only works on https:// or on localhost. Open Parley through one of those, or type below.";
    default:
      return `The microphone could not start: ${(err && err.message) || err}`;
  }
}

export class MicCapture {
  /** @param {(frame: ArrayBuffer) => void} onFrame called with each 20 ms int16 frame */
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.ctx = null;
    this.stream = null;
  }

  get active() {
    return this.ctx !== null;
  }

  async start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      // Browsers hide mediaDevices entirely on plain http:// pages other than localhost.
      throw Object.assign(new Error("insecure context"), { name: "InsecureContext" });
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 },
    });
    let source;
    try {
      // Let the browser resample to 16 kHz: it filters properly, and the server then needs no resampling.
      this.ctx = new AudioContext({ sampleRate: MIC_RATE });
      source = this.ctx.createMediaStreamSource(this.stream);
    } catch {
      // Firefox cannot connect a microphone to a context at another rate: use the native
      // rate and let the worklet resample.
      if (this.ctx) this.ctx.close();
      this.ctx = new AudioContext();
      source = this.ctx.createMediaStreamSource(this.stream);
    }
    try {
      await this.ctx.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
      const node = new AudioWorkletNode(this.ctx, "pcm16-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        channelCount: 1,
        processorOptions: { targetRate: MIC_RATE, frameSamples: MIC_FRAME_SAMPLES },
      });
      node.port.onmessage = (e) => this.onFrame(e.data);
      source.connect(node);
      // A node is only processed while it leads to the destination; its output is silence
      // (the worklet never writes it), so nothing is heard.
      node.connect(this.ctx.destination);
      await this.ctx.resume();
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  stop() {
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop()); // turns the browser's recording light off
    if (this.ctx) this.ctx.close();
    this.stream = null;
    this.ctx = null;
  }
}

/**
 * Plays reply audio as it streams in. Each binary frame becomes an AudioBufferSourceNode
 * scheduled to start exactly where the previous one ends, so there are no gaps; the first
 * frame (and the first after an underrun) starts `jitterMs` late, which absorbs network jitter.
 */
export class Player {
  constructor({ jitterMs = 100, onChange = () => {} } = {}) {
    this.jitter = jitterMs / 1000;
    this.onChange = onChange;
    this.ctx = null;
    this.rate = 22050;
    this.accepting = false; // false after stop(): late frames of a cut reply must stay silent
    this.nextTime = 0;
    this.sources = new Set();
    this.stats = { framesReceived: 0, framesPlayed: 0, samplesScheduled: 0, samplesPlayed: 0, underruns: 0 };
  }

  /** Create or wake the output context; browsers only allow this after a user gesture. */
  unlock() {
    if (!this.ctx) this.ctx = new AudioContext();
    if (this.ctx.state === "suspended") this.ctx.resume().then(() => this.onChange(), () => {});
    return this.ctx;
  }

  get blocked() {
    return this.ctx !== null && this.ctx.state === "suspended";
  }

  get playing() {
    return this.sources.size > 0;
  }

  /** `response.audio.start`: frames that follow are int16 PCM at `sampleRate`. */
  begin(sampleRate) {
    this.unlock();
    this.rate = sampleRate;
    this.accepting = true;
  }

  /** One binary frame of 16-bit little-endian PCM. */
  push(buffer) {
    this.stats.framesReceived += 1;
    if (!this.accepting || buffer.byteLength < 2) return;
    const ctx = this.unlock();
    const view = new DataView(buffer);
    const n = buffer.byteLength >> 1;
    const audio = ctx.createBuffer(1, n, this.rate); // the context resamples to the device rate
    const data = audio.getChannelData(0);
    for (let i = 0; i < n; i++) data[i] = view.getInt16(i * 2, true) / 32768;

    const now = ctx.currentTime;
    if (this.nextTime < now + 0.005) {
      // First frame, or the queue ran dry: start a little ahead so the next frames arrive in time.
      if (this.nextTime > 0) this.stats.underruns += 1;
      this.nextTime = now + this.jitter;
    }
    const src = ctx.createBufferSource();
    src.buffer = audio;
    src.connect(ctx.destination);
    src.start(this.nextTime);
    this.nextTime += audio.duration;
    this.sources.add(src);
    this.stats.samplesScheduled += n;
    src.onended = () => {
      this.sources.delete(src);
      this.stats.framesPlayed += 1;
      this.stats.samplesPlayed += n;
      if (!this.playing) {
        this.nextTime = 0;
        this.onChange();
      }
    };
    if (this.sources.size === 1) this.onChange();
  }

  /** `response.audio.end`: what is scheduled plays out; nothing more is coming. */
  end() {
    this.accepting = false;
  }

  /** Barge-in or Stop: silence now, and drop any frames of this reply still in flight. */
  stop() {
    this.accepting = false;
    for (const src of this.sources) {
      src.onended = null; // a cut frame does not count as played
      try {
        src.stop();
      } catch {
        /* never started */
      }
    }
    const wasPlaying = this.playing;
    this.sources.clear();
    this.nextTime = 0;
    if (wasPlaying) this.onChange();
  }
}
