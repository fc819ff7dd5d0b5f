// Vercel AI SDK capture client: runs ONE scenario with `experimental_telemetry` enabled.
//
//   node client.mjs --lib vercel-ai --mode default|no_content --scenario S --base-url http://127.0.0.1:P/v1 \
//        --otlp http://127.0.0.1:Q --result client_result.json [--no-app-span]
//
// NodeTracerProvider + BatchSpanProcessor + OTLP gRPC exporter. recordInputs/recordOutputs come from
// HELDOUT_RECORD_CONTENT (set by orchestrate.py). Texts mirror ../scenarios.py.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';

const require = createRequire(import.meta.url);

function parseArgs(argv) {
  const out = { noAppSpan: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--no-app-span') out.noAppSpan = true;
    else if (a.startsWith('--')) out[a.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = argv[++i];
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));

// ---- texts (same as scenarios.py)
const SYSTEM_PROMPT = 'You are Heldout-Bot, a terse assistant. Answer in one sentence.';
const SINGLE_USER = 'What is the capital of France?';
const MULTI_HISTORY = [
  { role: 'user', content: 'Name a primary color.' },
  { role: 'assistant', content: 'Red is a primary color.' },
];
const MULTI_USER = 'Now say it in French \u2014 quote the word "rouge"\nand keep it short.';
const TOOL_USER = "What's the weather in Paris right now?";
const TOOL_RESULT = '{"temperature": 18, "condition": "cloudy"}';
const STREAM_USER = 'Count from one to five in words.';
const ERROR_USER = 'This request will fail on the server side.';

// ---- OpenTelemetry
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({
    'service.name': `heldout-${args.lib}`,
    'heldout.library': args.lib,
    'heldout.mode': args.mode,
    'heldout.scenario': args.scenario,
  }),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: args.otlp }))],
});
provider.register();
const tracer = trace.getTracer('heldout.app');

const record = (process.env.HELDOUT_RECORD_CONTENT ?? 'true') !== 'false';
const telemetry = { isEnabled: true, recordInputs: record, recordOutputs: record };

const openai = createOpenAI({ baseURL: args.baseUrl, apiKey: 'sk-heldout-fake' });
const model = openai.chat('gpt-4o-mini');

const weatherTool = tool({
  description: 'Get the current weather for a city.',
  inputSchema: jsonSchema({
    type: 'object',
    properties: {
      location: { type: 'string' },
      unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
    },
    required: ['location'],
  }),
  execute: async () => TOOL_RESULT,
});

function toolCallsOf(step) {
  return (step.toolCalls ?? []).map((t) => ({ id: t.toolCallId, name: t.toolName, arguments: JSON.stringify(t.input) }));
}

async function runScenario(scenario) {
  const results = [];
  const base = { model, system: SYSTEM_PROMPT, maxRetries: 0, experimental_telemetry: telemetry };
  if (scenario === 'single' || scenario === 'multi_turn') {
    const messages =
      scenario === 'single'
        ? [{ role: 'user', content: SINGLE_USER }]
        : [...MULTI_HISTORY, { role: 'user', content: MULTI_USER }];
    const r = await generateText({ ...base, messages, maxOutputTokens: 64, temperature: 0.2 });
    results.push({ content: r.text, tool_calls: toolCallsOf(r), finish_reason: r.finishReason });
  } else if (scenario === 'tool_call') {
    const r = await generateText({
      ...base,
      messages: [{ role: 'user', content: TOOL_USER }],
      tools: { get_weather: weatherTool },
      toolChoice: 'auto',
      stopWhen: stepCountIs(2),
    });
    for (const step of r.steps) {
      results.push({ content: step.text || null, tool_calls: toolCallsOf(step), finish_reason: step.finishReason });
    }
  } else if (scenario === 'streaming') {
    const s = streamText({ ...base, messages: [{ role: 'user', content: STREAM_USER }], temperature: 0.2 });
    let text = '';
    for await (const part of s.textStream) text += part;
    results.push({ content: text, finish_reason: await s.finishReason });
  } else if (scenario === 'error') {
    try {
      await generateText({
        ...base,
        messages: [{ role: 'user', content: ERROR_USER }],
        temperature: 0.2,
        headers: { 'X-Fake-Fail': '500' },
      });
      results.push({ error: null });
    } catch (e) {
      results.push({ error: e?.name ?? String(e), status: e?.statusCode ?? null });
    }
  }
  return results;
}

let results;
if (args.noAppSpan) {
  results = await runScenario(args.scenario);
} else {
  results = await tracer.startActiveSpan(
    `heldout scenario ${args.scenario}`,
    { attributes: { 'heldout.scenario': args.scenario } },
    async (span) => {
      try {
        return await runScenario(args.scenario);
      } finally {
        span.end();
      }
    },
  );
}

const ver = (p) => {
  try {
    return require(`${p}/package.json`).version;
  } catch {
    return null;
  }
};
writeFileSync(
  args.result,
  JSON.stringify(
    {
      library_version: ver('ai'),
      ai_sdk_openai_version: ver('@ai-sdk/openai'),
      openai_version: null,
      otel_sdk_version: ver('@opentelemetry/sdk-trace-node'),
      capture_code:
        "generateText/streamText({model: createOpenAI({baseURL}).chat('gpt-4o-mini'), experimental_telemetry: " +
        `{isEnabled: true, recordInputs: ${record}, recordOutputs: ${record}}})`,
      results,
    },
    null,
    2,
  ),
);
await provider.forceFlush();
await provider.shutdown();
