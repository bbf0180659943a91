// OpenFeature's own web SDK and OFREP web provider (which no longer poll by default)
// against the real binary: a flags-file edit must reach the client as
// ConfigurationChanged, through the change stream the bulk response advertises, and the
// client must then read the new value.
//
//   make test-webclient      (or: node tests/webclient/ofrep_stream.mjs --binary target/debug/flagfn)
//
// Prints how long each edit took to arrive; fails past a generous deadline only.

import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EventSource } from 'eventsource';
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

// Node has no EventSource of its own; the provider looks for the global.
globalThis.EventSource = EventSource;

const DEADLINE_MS = 10_000; // generous: the figure that matters is printed, not asserted
const binaryFlag = process.argv.indexOf('--binary');
const binary = resolve(binaryFlag > 0 ? process.argv[binaryFlag + 1] : 'target/debug/flagfn');
const dir = mkdtempSync(join(tmpdir(), 'flagfn-webclient-'));
const flagsFile = join(dir, 'flags.json');
let writes = 0;

/** Writes the flags file with `banner` on or off, atomically, each write a later mtime. */
function writeFlags(enabled, color) {
  writes += 1;
  const flags = {
    flags: [
      { key: 'banner', enabled, rollout_percentage: 100, version: writes },
      {
        key: 'color', enabled: true, rollout_percentage: 100, version: writes,
        variants: [{ key: color, allocation: 1.0, value: color }],
      },
    ],
  };
  const tmp = `${flagsFile}.tmp`;
  writeFileSync(tmp, JSON.stringify(flags));
  const at = 1_700_000_000 + writes;
  utimesSync(tmp, at, at);
  renameSync(tmp, flagsFile);
}

/** Starts the binary on a free port; resolves with its base URL from the banner. */
function startServer() {
  const env = { ...process.env, FLAGS_FILE: flagsFile, BIND_ADDR: '127.0.0.1:0', RUST_LOG: 'warn' };
  for (const name of ['AWS_LAMBDA_RUNTIME_API', 'FLAGS_TABLE', 'KINESIS_STREAM_NAME', 'EVENTS_FILE', 'MANIFEST_TABLE']) {
    delete env[name];
  }
  const child = spawn(binary, [], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`no banner within ${DEADLINE_MS} ms: ${out}`)), DEADLINE_MS);
    child.on('exit', (code) => fail(new Error(`flagfn exited with ${code}: ${out}`)));
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const found = /listening on (http:\/\/[0-9.:]+)/.exec(out);
      if (found) {
        clearTimeout(timer);
        ok({ child, base: found[1] });
      }
    });
  });
}

/** Resolves with the ms until the next ConfigurationChanged after `edit()`. */
function changeArrives(client, edit) {
  return new Promise((ok, fail) => {
    const started = performance.now();
    const timer = setTimeout(() => fail(new Error(`no ConfigurationChanged within ${DEADLINE_MS} ms`)), DEADLINE_MS);
    const handler = () => {
      clearTimeout(timer);
      client.removeHandler(ProviderEvents.ConfigurationChanged, handler);
      ok(performance.now() - started);
    };
    client.addHandler(ProviderEvents.ConfigurationChanged, handler);
    edit();
  });
}

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

let server;
try {
  writeFlags(true, 'red');
  server = await startServer();
  const provider = new OFREPWebProvider({ baseUrl: server.base, cacheMode: 'disabled' });
  await OpenFeature.setContext({ targetingKey: 'user-1' });
  await OpenFeature.setProviderAndWait(provider);
  const client = OpenFeature.getClient();
  check(client.getBooleanValue('banner', false) === true, 'banner starts on');
  check(client.getStringValue('color', 'none') === 'red', 'color starts red');
  // No wait for the stream to open: an edit before it does is still announced (the
  // advertised URI names the version this client fetched).

  const first = await changeArrives(client, () => writeFlags(false, 'red'));
  check(client.getBooleanValue('banner', true) === false, 'banner reads off after the edit');
  const second = await changeArrives(client, () => writeFlags(false, 'blue'));
  check(client.getStringValue('color', 'none') === 'blue', 'color reads blue after the second edit');
  console.log(`web client: flags-file edit → ConfigurationChanged in ${first.toFixed(0)} ms, then ${second.toFixed(0)} ms`);
  await OpenFeature.close();
} finally {
  if (server) {
    server.child.removeAllListeners('exit');
    server.child.kill('SIGTERM');
  }
  rmSync(dir, { recursive: true, force: true });
}
