#!/usr/bin/env node
// Runs an ASL definition with aws-local-stepfunctions, sending every Task to a Lambda
// function served by `cargo lambda watch` (its Invoke API, by function name).
//
// It is only the engine: the stack (moto, the fake Qovery, cargo lambda) and the
// assertions live in the Python orchestrator. Output is one JSON object per line on
// stdout, like an execution history, then a final {"event":"Result",...} line.
// Exit code: 0 the execution succeeded, 2 it failed, 1 the driver itself failed.
//
// Waits and Retry pauses take 0 ms unless --wait-ms says otherwise. A function error
// (cargo lambda answers HTTP 500 with errorType/errorMessage) becomes the ASL error
// named errorType, with the error document as Cause, as on AWS.
//
// --twice models at-least-once delivery: each invocation of the named Task states
// ('*' for all) is made twice with the same input. The first answer, output or error,
// is lost, as when a call did its work but its answer never came back; the second goes
// to the engine. Both are recorded; the lost one's Lambda events carry answerLost: true.
//
//   node run-asl.mjs --definition statemachine/rotation.asl.json \
//     --invoke-url http://127.0.0.1:9000 --input '{"...":"..."}' \
//     [--context '{"Execution":{"Id":"arn:..."},"StateMachine":{"Id":"arn:..."}}'] \
//     [--wait-ms WaitForDeploy=300] [--default-wait-ms 0] [--retry-ms 0] [--twice '*'|TaskName ...]
//     [--stop-after StateName] [--hold-after StateName]
//
// --stop-after stops the execution right after the named state exits, as
// `aws stepfunctions stop-execution` would between two states: once that state's
// StateExited is out, no Lambda function is invoked any more (a Task state's handler
// returning marks the stop, so the next Task never reaches its function; another state
// is seen exiting before the next Task invokes anything), the execution is aborted, and
// the result is {"status":"ABORTED","error":"ExecutionAborted"}. Inside a Map, the first
// exit of the state stops everything. After the last Task, the execution may reach its
// Succeed state first and end SUCCEEDED.
//
// --hold-after holds the execution (still running) right after the named state first
// exits: the next Task waits before invoking its function until a line `release`
// arrives on stdin. The test does what it must while the execution holds what it
// holds (the rotation lock, say), then releases it.

import { appendFileSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { StateMachine } from 'aws-local-stepfunctions';

const REGION = 'us-east-1';
const ACCOUNT = '123456789012';

const { values: args } = parseArgs({
  options: {
    definition: { type: 'string' },
    input: { type: 'string', default: '{}' },
    context: { type: 'string', default: '{}' },
    'invoke-url': { type: 'string', default: process.env.LAMBDA_INVOKE_URL },
    // Extra DefinitionSubstitutions, KEY=VALUE. ${XxxFunctionArn} needs none: it maps to
    // the ARN of function xxx (kebab case), as template.yaml's !GetAtt would.
    substitution: { type: 'string', multiple: true, default: [] },
    // Wait states pause this many ms (default 0: real waits are minutes to hours).
    'default-wait-ms': { type: 'string', default: '0' },
    'wait-ms': { type: 'string', multiple: true, default: [] },
    // Pause before every Retry attempt, in ms.
    'retry-ms': { type: 'string', default: '0' },
    // How long one invocation may take before the driver gives up on the HTTP call.
    'invoke-timeout-ms': { type: 'string', default: '130000' },
    // Task states (or '*') whose every invocation is made twice, the first answer lost.
    twice: { type: 'string', multiple: true, default: [] },
    // Stop (abort) the execution right after this state exits.
    'stop-after': { type: 'string' },
    // Hold it after this state first exits, until `release` comes on stdin.
    'hold-after': { type: 'string' },
    // Where the sns:publish integration delivers: a file, one JSON line per message.
    'sns-outbox': { type: 'string' },
  },
  strict: true,
});

function emit(event) {
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), ...event }) + '\n');
}

// Exits once everything written to stdout is out: writes to a pipe are asynchronous,
// and a reader that paused (a test starting a second execution from an event of this
// one) must still get every line, the Result last.
function exitAfterOutput(code) {
  process.exitCode = code;
  process.stdout.write('', () => process.exit(code));
}

// Before the execution starts: little was written, and the pipe takes it at once.
function fail(message) {
  emit({ event: 'Result', status: 'DRIVER_ERROR', error: 'DriverError', cause: message });
  process.exit(1);
}

if (!args.definition) fail('--definition is required');
if (!args['invoke-url']) fail('--invoke-url (or LAMBDA_INVOKE_URL) is required');
const invokeUrl = args['invoke-url'].replace(/\/+$/, '');

function functionArn(name) {
  return `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name}`;
}

function kebab(camel) {
  return camel.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

// DefinitionSubstitutions, as CloudFormation applies them to DefinitionUri.
function substitute(text) {
  const explicit = new Map();
  for (const pair of args.substitution) {
    const eq = pair.indexOf('=');
    if (eq < 1) fail(`bad --substitution ${pair}, expected KEY=VALUE`);
    explicit.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const missing = new Set();
  const out = text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (whole, key) => {
    if (explicit.has(key)) return explicit.get(key);
    const m = /^([A-Za-z0-9]+)FunctionArn$/.exec(key);
    if (m) return functionArn(kebab(m[1]));
    missing.add(key);
    return whole;
  });
  if (missing.size) fail(`no substitution for ${[...missing].map((k) => '${' + k + '}').join(', ')}`);
  return out;
}

// Every state of the machine, nested Map and Parallel states included.
function* allStates(machine) {
  for (const [name, state] of Object.entries(machine.States ?? {})) {
    yield [name, state];
    const inner = state.ItemProcessor ?? state.Iterator;
    if (inner) yield* allStates(inner);
    for (const branch of state.Branches ?? []) yield* allStates(branch);
  }
}

// A Lambda error as Step Functions reports it: Error is the function's errorType, so
// Retry and Catch match it; Cause is the error payload as JSON, as on AWS.
class LambdaFunctionError extends Error {
  constructor(errorType, cause) {
    super(cause);
    this.name = errorType;
  }
}

function msSince(start) {
  return Math.round(performance.now() - start);
}

const twice = new Set(args.twice);
const stopAfter = args['stop-after'];
// Set once the --stop-after state has done its work: from then on nothing is invoked.
let stopping = false;

function stopNow() {
  stopping = true;
  execution.abort();
}

const holdAfter = args['hold-after'];
// Once the --hold-after state exited: a promise resolved by `release` on stdin.
let holding = null;
let release = () => {};
const released = new Promise((resolve) => {
  release = resolve;
});

function startHolding() {
  if (holding) return;
  holding = released;
  emit({ event: 'Held', state: holdAfter });
}

if (holdAfter !== undefined) {
  let buffered = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buffered += chunk;
    if (buffered.split('\n').some((line) => line.trim() === 'release')) release();
  });
  // The test ended (or died) without releasing: nothing more will come.
  process.stdin.on('end', () => release());
}

async function invoke(stateName, functionName, input) {
  if (invalidWait) throw new LambdaFunctionError('States.Runtime', invalidWait);
  // Let the engine's pending events reach the log loop first: a --stop-after state that
  // is not a Task (a Choice, a Succeed in a Map) is seen exiting there.
  await new Promise((resolve) => setImmediate(resolve));
  if (holding) await holding;
  if (stopping) {
    // Stopped between two states: this Task never reaches its function.
    stopNow();
    return new Promise(() => {});
  }
  if (twice.has('*') || twice.has(stateName)) {
    try {
      await invokeOnce(stateName, functionName, input, { answerLost: true });
    } catch (e) {
      if (!(e instanceof LambdaFunctionError)) throw e;
    }
  }
  const output = await invokeOnce(stateName, functionName, input, {});
  // The engine emits this state's StateExited next; the next Task finds `stopping`
  // (or `holding`).
  if (stateName === stopAfter) stopping = true;
  if (stateName === holdAfter) startHolding();
  return output;
}

// One Lambda invocation; `mark` is added to each event it records.
async function invokeOnce(stateName, functionName, input, mark) {
  const url = `${invokeUrl}/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`;
  // Let the engine's pending events (StateEntered...) reach stdout first, so that the
  // lines come out in history order.
  await new Promise((resolve) => setImmediate(resolve));
  const start = performance.now();
  emit({ event: 'LambdaFunctionScheduled', state: stateName, function: functionName, input, ...mark });
  let response;
  let body;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(input),
      signal: AbortSignal.timeout(Number(args['invoke-timeout-ms'])),
    });
    body = await response.text();
  } catch (e) {
    // What the AWS SDK inside Step Functions reports when it cannot reach Lambda.
    const error = e?.name === 'TimeoutError' ? 'Lambda.Unknown' : 'Lambda.SdkClientException';
    const cause = `invoking ${functionName} at ${url} failed: ${e?.message ?? e}`;
    emit({ event: 'LambdaFunctionFailed', state: stateName, function: functionName, error, cause, durationMs: msSince(start), ...mark });
    throw new LambdaFunctionError(error, cause);
  }
  if (response.status === 200) {
    let output = null;
    try {
      output = body.length ? JSON.parse(body) : null;
    } catch (e) {
      const cause = `${functionName} returned a body that is not JSON: ${body.slice(0, 200)}`;
      emit({ event: 'LambdaFunctionFailed', state: stateName, function: functionName, error: 'Lambda.Unknown', cause, durationMs: msSince(start), ...mark });
      throw new LambdaFunctionError('Lambda.Unknown', cause);
    }
    emit({ event: 'LambdaFunctionSucceeded', state: stateName, function: functionName, output, durationMs: msSince(start), ...mark });
    return output;
  }
  // cargo lambda answers a function error with 500 and the runtime's error document.
  let payload = null;
  try {
    payload = JSON.parse(body);
  } catch {
    /* not JSON: handled below */
  }
  let error;
  let cause;
  if (payload && typeof payload.errorType === 'string') {
    error = payload.errorType;
    cause = JSON.stringify(payload);
  } else if (response.status === 404) {
    error = 'Lambda.ResourceNotFoundException';
    cause = `cargo lambda does not serve a function named ${functionName}: ${body.slice(0, 300)}`;
  } else {
    error = 'Lambda.Unknown';
    cause = `HTTP ${response.status} from cargo lambda for ${functionName}: ${body.slice(0, 300)}`;
  }
  emit({ event: 'LambdaFunctionFailed', state: stateName, function: functionName, error, cause, durationMs: msSince(start), ...mark });
  throw new LambdaFunctionError(error, cause);
}

let definition;
try {
  definition = JSON.parse(substitute(readFileSync(args.definition, 'utf8')));
} catch (e) {
  fail(`cannot read the definition ${args.definition}: ${e.message}`);
}

let input;
let context;
try {
  input = JSON.parse(args.input);
  context = JSON.parse(args.context);
} catch (e) {
  fail(`--input and --context must be JSON: ${e.message}`);
}

// A Wait override skips the engine's own reading of SecondsPath/TimestampPath, so the
// driver checks those values itself, with the rules Step Functions applies: a bad one
// fails the execution with States.Runtime instead of passing unnoticed.
const waitStates = {};
let invalidWait = null;

function readPath(path, input) {
  if (path === '$') return { found: true, value: input };
  const m = /^\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$/.exec(path);
  if (!m) return { found: false, unsupported: true };
  let value = input;
  for (const key of m[1].slice(1).split('.')) {
    if (value === null || typeof value !== 'object' || !(key in value)) return { found: false };
    value = value[key];
  }
  return { found: true, value };
}

// RFC 3339 with an uppercase T, and Z or a numeric offset, as the ASL spec requires.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function checkWait(name, input) {
  const state = waitStates[name];
  if (!state) return null;
  const field = state.SecondsPath ? 'SecondsPath' : state.TimestampPath ? 'TimestampPath' : null;
  if (!field) return null;
  const { found, value, unsupported } = readPath(state[field], input);
  if (unsupported) return null;
  if (!found) return `${field} '${state[field]}' of Wait state ${name} does not point to a value`;
  if (field === 'SecondsPath' && !(Number.isInteger(value) && value >= 0 && value <= 99999999)) {
    return `${field} '${state[field]}' of Wait state ${name} must point to a non-negative integer; got ${JSON.stringify(value)}`;
  }
  if (field === 'TimestampPath' && !(typeof value === 'string' && RFC3339.test(value) && !Number.isNaN(Date.parse(value)))) {
    return `${field} '${state[field]}' of Wait state ${name} must point to an RFC 3339 timestamp; got ${JSON.stringify(value)}`;
  }
  return null;
}

// The optimized sns:publish integration, as SNS takes it: a topic ARN of this account
// and region, a Subject of at most 100 printable ASCII characters on one line, a
// string Message of at most 256 KiB. Delivered to --sns-outbox; an error is named as
// Step Functions names a service integration's (SNS.<exception>).
const SNS_PUBLISH = 'arn:aws:states:::sns:publish';
const topicArn = new RegExp(`^arn:aws:sns:${REGION}:${ACCOUNT}:[A-Za-z0-9_-]{1,256}$`);

async function publish(stateName, input) {
  await new Promise((resolve) => setImmediate(resolve));
  if (stopping) {
    stopNow();
    return new Promise(() => {});
  }
  const invalid = (why) => new LambdaFunctionError('SNS.InvalidParameterException', JSON.stringify({ message: why }));
  const { TopicArn, Subject, Message, ...rest } = input ?? {};
  if (Object.keys(rest).length) throw invalid(`unsupported parameters ${Object.keys(rest).join(', ')}`);
  if (typeof TopicArn !== 'string' || !topicArn.test(TopicArn)) throw invalid(`TopicArn ${TopicArn} is not a topic ARN of ${ACCOUNT} in ${REGION}`);
  if (Subject !== undefined && (typeof Subject !== 'string' || !/^[\x20-\x7e]{1,100}$/.test(Subject))) {
    throw invalid(`Subject must be 1 to 100 printable ASCII characters on one line; got ${JSON.stringify(Subject)}`);
  }
  if (typeof Message !== 'string' || Message.length === 0 || Buffer.byteLength(Message) > 262144) {
    throw invalid('Message must be a non-empty string of at most 256 KiB');
  }
  if (!args['sns-outbox']) throw new LambdaFunctionError('SNS.NotFoundException', JSON.stringify({ message: 'no --sns-outbox' }));
  const MessageId = randomUUID();
  appendFileSync(args['sns-outbox'], JSON.stringify({ state: stateName, TopicArn, Subject, Message, MessageId }) + '\n');
  emit({ event: 'Published', state: stateName, topic: TopicArn, subject: Subject });
  return { MessageId };
}

const taskResourceLocalHandlers = {};
const waitTimeOverrides = {};
const retryIntervalOverrides = {};
const taskResources = new Map();
const lambdaArn = new RegExp(`^arn:aws:lambda:${REGION}:${ACCOUNT}:function:([A-Za-z0-9_-]+)$`);
const defaultWait = Number(args['default-wait-ms']);
const retryMs = Number(args['retry-ms']);

for (const [name, state] of allStates(definition)) {
  if (state.Type === 'Task') {
    // The engine keys overrides by state name, so a name must mean one resource.
    if (taskResources.has(name) && taskResources.get(name) !== state.Resource) {
      fail(`two Task states are named ${name} with different resources`);
    }
    taskResources.set(name, state.Resource);
    if (state.Resource === SNS_PUBLISH) {
      taskResourceLocalHandlers[name] = (taskInput) => publish(name, taskInput);
    } else {
      const m = lambdaArn.exec(state.Resource);
      if (!m) fail(`Task ${name} has resource ${state.Resource}, not a Lambda function ARN or ${SNS_PUBLISH}`);
      const functionName = m[1];
      taskResourceLocalHandlers[name] = (taskInput) => invoke(name, functionName, taskInput);
    }
  }
  if (state.Type === 'Wait') {
    waitTimeOverrides[name] = defaultWait;
    waitStates[name] = state;
  }
  if (Array.isArray(state.Retry)) retryIntervalOverrides[name] = retryMs;
}
for (const name of twice) {
  if (name !== '*' && !taskResources.has(name)) fail(`bad --twice ${name}: not a Task state of the definition`);
}
for (const [option, name] of [['--stop-after', stopAfter], ['--hold-after', holdAfter]]) {
  if (name !== undefined && ![...allStates(definition)].some(([state]) => state === name)) {
    fail(`bad ${option} ${name}: not a state of the definition`);
  }
}
for (const pair of args['wait-ms']) {
  const [name, ms] = pair.split('=');
  if (!(name in waitTimeOverrides) || ms === undefined || Number.isNaN(Number(ms))) {
    fail(`bad --wait-ms ${pair}: expected WaitStateName=milliseconds`);
  }
  waitTimeOverrides[name] = Number(ms);
}

let machine;
try {
  machine = new StateMachine(definition);
} catch (e) {
  fail(e.message);
}

const started = performance.now();
const execution = machine.run(input, {
  overrides: { taskResourceLocalHandlers, waitTimeOverrides, retryIntervalOverrides },
  context,
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    execution.abort();
    emit({ event: 'Result', status: 'ABORTED', error: 'ExecutionAborted', cause: `driver got ${signal}`, durationMs: msSince(started) });
    exitAfterOutput(130);
  });
}

function stateEvent(ev) {
  const out = { event: ev.type, state: ev.state.name, stateType: ev.state.type };
  if (ev.index !== undefined) out.index = ev.index;
  switch (ev.type) {
    case 'StateEntered':
      out.input = ev.state.input;
      break;
    case 'StateExited':
      out.output = ev.state.output;
      break;
    case 'StateFailed':
      out.error = ev.Error;
      out.cause = ev.Cause;
      break;
    case 'StateRetried':
      out.attempt = ev.retry.attempt;
      out.retrier = ev.retry.retrier.ErrorEquals;
      break;
    case 'StateCaught':
      out.catcher = ev.catch.catcher.ErrorEquals;
      out.next = ev.catch.catcher.Next;
      break;
  }
  return out;
}

const logs = (async () => {
  for await (const ev of execution.eventLogs) {
    if (ev.state) {
      emit(stateEvent(ev));
      if (ev.type === 'StateExited' && ev.state.name === stopAfter) stopNow();
      if (ev.type === 'StateExited' && ev.state.name === holdAfter) startHolding();
      if (ev.type === 'StateEntered' && ev.state.type === 'Wait' && !invalidWait) {
        invalidWait = checkWait(ev.state.name, ev.state.input);
        if (invalidWait) {
          emit({ event: 'StateFailed', state: ev.state.name, stateType: 'Wait', error: 'States.Runtime', cause: invalidWait });
          execution.abort();
        }
      }
    } else if (ev.parentState) {
      const out = { event: ev.type, state: ev.parentState.name, index: ev.index };
      if (ev.Error !== undefined) Object.assign(out, { error: ev.Error, cause: ev.Cause });
      emit(out);
    } else if (ev.type === 'ExecutionStarted') {
      emit({ event: ev.type, input: ev.input });
    } else if (ev.type === 'ExecutionSucceeded') {
      emit({ event: ev.type, output: ev.output });
    } else if (ev.type === 'ExecutionFailed') {
      emit({ event: ev.type, error: ev.Error, cause: ev.Cause });
    } else {
      emit({ event: ev.type });
    }
  }
})();

let result;
try {
  const output = await execution.result;
  result = { event: 'Result', status: 'SUCCEEDED', output };
} catch (e) {
  // ExecutionError wraps the state's error: its name is the ASL error name.
  const inner = e?.cause instanceof Error ? e.cause : e;
  if (e?.name === 'ExecutionAbortedError' && stopping) {
    result = { event: 'Result', status: 'ABORTED', error: 'ExecutionAborted', cause: `stopped after state ${stopAfter} (--stop-after)` };
  } else {
    const status = e?.name === 'ExecutionTimeoutError' ? 'TIMED_OUT' : 'FAILED';
    result = { event: 'Result', status, error: inner?.name ?? 'Unknown', cause: inner?.message ?? String(e) };
  }
}
if (invalidWait) {
  result = { event: 'Result', status: 'FAILED', error: 'States.Runtime', cause: invalidWait };
}
await logs;
emit({ ...result, durationMs: msSince(started) });
exitAfterOutput(result.status === 'SUCCEEDED' ? 0 : 2);
