// AudioWorklet processor: microphone float samples -> 16-bit little-endian PCM frames.
//
// Runs on the audio rendering thread, so it only converts and batches; the main
// thread sends each frame over the WebSocket. In Chromium the page records with an
// AudioContext at 16 kHz, so the browser has already resampled (with proper
// filtering) and this is a plain conversion. Browsers that refuse a 16 kHz context
// for a microphone (Firefox) hand us the device rate instead, and we fall back to
// linear interpolation here: rough, but good enough for speech recognition.

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, frameSamples = 320 } = options.processorOptions || {};
    this.step = sampleRate / targetRate; // input samples per output sample (`sampleRate` is the context's)
    this.pos = 0; // read position for the next output sample, relative to the current block
    this.prev = 0; // last input sample of the previous block, to interpolate across blocks
    this.frameSamples = frameSamples;
    this.newFrame();
  }

  newFrame() {
    this.frame = new ArrayBuffer(this.frameSamples * 2);
    this.view = new DataView(this.frame);
    this.filled = 0;
  }

  push(value) {
    const s = Math.max(-1, Math.min(1, value));
    // DataView with littleEndian=true: the wire format is little-endian whatever the CPU is.
    this.view.setInt16(this.filled * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    this.filled += 1;
    if (this.filled === this.frameSamples) {
      // Transfer (not copy) the buffer to the main thread, then start a fresh one.
      this.port.postMessage(this.frame, [this.frame]);
      this.newFrame();
    }
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true; // no microphone data this block (e.g. track muted); keep the node alive
    if (this.step === 1) {
      for (let i = 0; i < input.length; i++) this.push(input[i]);
      return true;
    }
    // Index -1 is the previous block's last sample, so interpolation never has a gap.
    while (this.pos < input.length - 1) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i < 0 ? this.prev : input[i];
      this.push(a + (input[i + 1] - a) * frac);
      this.pos += this.step;
    }
    this.pos -= input.length;
    this.prev = input[input.length - 1];
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
