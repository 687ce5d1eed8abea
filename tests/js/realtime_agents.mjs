// The stock @openai/agents RealtimeSession, with its stock OpenAIRealtimeWebSocket transport, pointed at
// Parley: one typed turn, one spoken turn (PCM 24 kHz from PARLEY_SPEECH, streamed at real time), and an
// interruption. Prints one JSON line with what it saw; tests/test_realtime_agents_js.py judges it.
import { readFileSync } from 'node:fs';
import { OpenAIRealtimeWebSocket, RealtimeAgent, RealtimeSession } from '@openai/agents/realtime';

const url = process.env.PARLEY_URL;
const agent = new RealtimeAgent({ name: 'Assistant', instructions: 'Answer briefly.' });
const transport = new OpenAIRealtimeWebSocket({ url });
const session = new RealtimeSession(agent, { transport, model: 'parley' });
const errors = [];
session.on('error', (e) => errors.push(JSON.stringify(e.error ?? e).slice(0, 300)));
let audioBytes = 0;
session.on('audio', (ev) => { audioBytes += ev.data.byteLength; });
let interrupted = 0;
session.on('audio_interrupted', () => { interrupted += 1; });

const done = () => new Promise((resolve) => transport.once('response.done', resolve));
const firstAudio = () => new Promise((resolve) => transport.once('response.output_audio.delta', resolve));
const result = { errors };

await session.connect({ apiKey: process.env.PARLEY_TOKEN, url });

// 1. typed
let finished = done();
session.sendMessage('hello there');
let ev = await finished;
result.typed = { status: ev.response.status, transcript: ev.response.output?.[0]?.content?.[0]?.transcript ?? '',
                 audioBytes };

// 2. spoken, 20 ms chunks at real time
const pcm = readFileSync(process.env.PARLEY_SPEECH);
const transcribed = new Promise((resolve) =>
  transport.once('conversation.item.input_audio_transcription.completed', resolve));
finished = done();
const chunk = 960; // 20 ms of 16-bit PCM at 24 kHz
for (let at = 0; at < pcm.length; at += chunk) {
  const piece = pcm.subarray(at, at + chunk);
  session.sendAudio(piece.buffer.slice(piece.byteOffset, piece.byteOffset + piece.byteLength));
  await new Promise((r) => setTimeout(r, 20));
}
const heard = await transcribed;
ev = await finished;
result.spoken = { transcript: heard.transcript, status: ev.response.status };

// 3. interruption: ask for something long, interrupt once its audio flows
finished = done();
const flowing = firstAudio();
session.sendMessage('tell me a long story');
await flowing;
const asked = Date.now();
session.interrupt();
ev = await finished;
result.interruption = { status: ev.response.status, reason: ev.response.status_details?.reason ?? null,
                        ms: Date.now() - asked, audioInterruptedEvents: interrupted };
result.history = session.history.filter((h) => h.type === 'message').map((h) => h.role);
console.log(JSON.stringify(result));
session.close();
