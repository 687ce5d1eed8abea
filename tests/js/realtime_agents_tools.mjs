// The stock @openai/agents RealtimeSession with a tool() on its RealtimeAgent, pointed at Parley: the SDK
// declares the tool in session.update, runs it when Parley's function_call item arrives, sends its output
// and asks for the answer itself. Prints one JSON line; tests/test_realtime_agents_js.py judges it.
import { OpenAIRealtimeWebSocket, RealtimeAgent, RealtimeSession, tool } from '@openai/agents/realtime';

const url = process.env.PARLEY_URL;
const calls = [];
const setLights = tool({
  name: 'set_lights',
  description: 'Switch the lights of a room in the user\'s home on or off.',
  parameters: {
    type: 'object',
    properties: { room: { type: 'string' }, on: { type: 'boolean' } },
    required: ['room', 'on'],
    additionalProperties: false,
  },
  strict: true,
  execute: async (args) => {
    calls.push(args);
    return JSON.stringify({ ok: true, room: args.room, brightness: 80 });
  },
});
const agent = new RealtimeAgent({ name: 'Home', instructions: 'You control the lights.', tools: [setLights] });
const transport = new OpenAIRealtimeWebSocket({ url });
const session = new RealtimeSession(agent, { transport, model: 'parley', config: { outputModalities: ['text'] } });
const errors = [];
session.on('error', (e) => errors.push(JSON.stringify(e.error ?? e).slice(0, 300)));
const toolEnds = [];
session.on('agent_tool_end', (_ctx, _agent, t, result) => toolEnds.push({ name: t.name, result }));

const responses = [];
const answered = new Promise((resolve) => {
  transport.on('response.done', (ev) => {
    responses.push(ev.response);
    if (ev.response.output?.some((item) => item.type === 'message')) resolve(ev.response);
  });
});

await session.connect({ apiKey: process.env.PARLEY_TOKEN, url });
session.sendMessage('please switch on the kitchen lights');
const answer = await answered;
const result = {
  errors,
  calls,
  toolEnds,
  statuses: responses.map((r) => r.status),
  firstOutput: responses[0]?.output?.map((item) => item.type) ?? [],
  answer: answer.output.find((item) => item.type === 'message')?.content?.[0]?.text ?? '',
  history: session.history.map((h) => h.type),
};
console.log(JSON.stringify(result));
session.close();
