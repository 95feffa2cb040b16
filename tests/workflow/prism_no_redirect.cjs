// Preloaded into Prism (`node --require prism_no_redirect.cjs prism proxy ...`, stack.py).
//
// Prism's proxy forwards each request to the fake with node-fetch, whose default is to
// follow redirects: a 3xx from the fake (a redirect fault, scenario 53) was followed by
// Prism itself, which sent the request, a credentials PUT's secret key included, to the
// Location, and answered the functions with whatever came from there. Between the
// functions and Qovery, Prism must pass a redirect on as it came, so that what the
// functions do with it is what is tested. This makes Prism's upstream fetch use
// `redirect: 'manual'`: the 3xx and its Location go back to the caller unfollowed (Prism
// then warns that the spec lists no such status, as for any injected fault).
//
// It patches the node-fetch that @stoplight/prism-http resolves, whose forwarder calls
// it as `node_fetch_1.default(url, options)`; it refuses to start Prism if that changed.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const prismHttp = path.dirname(require.resolve('@stoplight/prism-http/package.json', { paths: [__dirname] }));
const forwarder = path.join(prismHttp, 'dist', 'forwarder', 'index.js');
if (!/node_fetch_1\.default\)\(url, \{/.test(fs.readFileSync(forwarder, 'utf8'))) {
  throw new Error(`prism_no_redirect.cjs: ${forwarder} no longer calls node_fetch_1.default(url, {...}); update this patch`);
}
const fetch = require(require.resolve('node-fetch', { paths: [prismHttp] }));
const original = fetch.default;
if (typeof original !== 'function') {
  throw new Error('prism_no_redirect.cjs: node-fetch has no default export to wrap; update this patch');
}
fetch.default = (url, options) => original(url, { ...(options || {}), redirect: 'manual' });
