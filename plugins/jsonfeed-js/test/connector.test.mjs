// Unit tests of src/connector.js on Node (node --test test/), with fetch and the log import
// stubbed. The component itself is tested against the host (see README.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const logged = [];
globalThis.__tsunagiLog = (level, message) => logged.push([level, message]);

// Load the connector with its WIT import replaced by the stub above.
const source = await readFile(new URL('../src/connector.js', import.meta.url), 'utf8');
const patched =
  source.replace(
    "import { log } from 'tsunagi:connector/log@0.1.3';",
    'const log = (...args) => globalThis.__tsunagiLog(...args);',
  ) + '\nexport { serdeNumberText };\n';
assert.notEqual(patched, source, 'the log import is where the test expects it');
const file = join(await mkdtemp(join(tmpdir(), 'jsonfeed-js-')), 'connector.mjs');
await writeFile(file, patched);
const { poll, serdeNumberText } = await import(file);

/** Whether this engine passes source text to JSON.parse revivers (SpiderMonkey does). */
const sourceText = (() => {
  let seen = false;
  JSON.parse('1', (key, value, context) => {
    seen = typeof context?.source === 'string';
    return value;
  });
  return seen;
})();

/** Answers requests from a table of url → (request) => Response; records the requests. */
function serve(routes) {
  const requests = [];
  globalThis.fetch = async (url, init) => {
    requests.push({ url, headers: Object.fromEntries(init.headers), redirect: init.redirect });
    const route = routes[url];
    if (!route) throw new TypeError('connection refused');
    return route(init);
  };
  return requests;
}

const json = (body, headers = {}) => () =>
  new Response(typeof body === 'string' ? body : JSON.stringify(body), { status: 200, headers });
const status = (code, headers = {}) => () => new Response(null, { status: code, headers });

async function failure(request) {
  try {
    await poll.poll(request);
  } catch (error) {
    assert.ok(Object.hasOwn(error, 'payload'), `thrown without payload: ${error}`);
    return error.payload;
  }
  assert.fail('poll succeeded');
}

const FEED = 'http://feeds.test/feed.json';

test('maps items, with validators and conditional headers', async () => {
  const requests = serve({
    [FEED]: json(
      {
        version: 'https://jsonfeed.org/version/1.1',
        items: [
          {
            id: 'a',
            title: 'A',
            url: 'https://x.test/a',
            external_url: 'https://y.test/a',
            date_published: '2024-03-01T12:30:45.123+02:00',
            date_modified: '2024-03-02T00:00:00Z',
            authors: [{ name: 'Ann' }, { url: 'x' }, 'Bob', { name: 7 }, { name: 'Cy' }],
            author: { name: 'ignored' },
            summary: 'sum',
            content_html: '<p>hi</p>',
            content_text: 'hi',
            tags: ['x', 1, 'y', null],
          },
          { id: 42, external_url: 'https://y.test/b', content_text: 'text', author: { name: 'Old' } },
          { id: 'c', title: 3, date_published: 'yesterday', authors: null, author: { name: 'no' } },
        ],
      },
      { etag: '"v2"', 'last-modified': 'Sat, 02 Mar 2024 00:00:00 GMT' },
    ),
  });
  const response = await poll.poll({ target: FEED, etag: '"v1"', lastModified: 'Fri, 01 Mar 2024 00:00:00 GMT' });
  assert.deepEqual(requests[0].headers, {
    accept: 'application/feed+json, application/json;q=0.9, */*;q=0.5',
    'user-agent': 'tsunagi-jsonfeed/0.1',
    'if-none-match': '"v1"',
    'if-modified-since': 'Fri, 01 Mar 2024 00:00:00 GMT',
  });
  assert.equal(requests[0].redirect, 'manual');
  assert.deepEqual(response, {
    notModified: false,
    items: [
      {
        id: 'a',
        title: 'A',
        link: 'https://x.test/a',
        published: '2024-03-01T10:30:45Z',
        updated: '2024-03-02T00:00:00Z',
        authors: ['Ann', 'Cy'],
        summary: 'sum',
        content: '<p>hi</p>',
        categories: ['x', 'y'],
      },
      {
        id: '42',
        title: undefined,
        link: 'https://y.test/b',
        published: undefined,
        updated: undefined,
        authors: ['Old'],
        summary: undefined,
        content: 'text',
        categories: [],
      },
      {
        id: 'c',
        title: undefined,
        link: undefined,
        published: undefined,
        updated: undefined,
        authors: [],
        summary: undefined,
        content: undefined,
        categories: [],
      },
    ],
    etag: '"v2"',
    lastModified: 'Sat, 02 Mar 2024 00:00:00 GMT',
    cursor: undefined,
    refreshAfterSeconds: undefined,
  });
});

test('skips elements without an id, with a warning each', async () => {
  serve({ [FEED]: json({ items: [1, 'x', null, [], {}, { id: null }, { id: true }, { id: 'ok' }] }) });
  logged.length = 0;
  const response = await poll.poll({ target: FEED });
  assert.deepEqual(response.items.map((item) => item.id), ['ok']);
  assert.deepEqual(response.etag, undefined);
  assert.equal(logged.length, 7);
  assert.deepEqual(logged[0], ['warn', 'skipped an item without id']);
});

// Checked against serde_json 1.0.154 (`Value` → `Number::to_string()`), including its f64 parse
// that is sometimes one ulp off ("9e284").
const NUMBERS = [
  ['0', '0'],
  ['-5', '-5'],
  ['18446744073709551615', '18446744073709551615'],
  ['18446744073709551616', '1.8446744073709552e+19'],
  ['-9223372036854775808', '-9223372036854775808'],
  ['-9223372036854775809', '-9.223372036854776e+18'],
  ['1.0', '1.0'],
  ['1.5', '1.5'],
  ['-0', '-0.0'],
  ['1e21', '1e+21'],
  ['1E+2', '100.0'],
  ['0.0001', '0.0001'],
  ['0.00001', '0.00001'],
  ['0.000001', '1e-6'],
  ['123456789012345678', '123456789012345678'],
  ['1.2345e-10', '1.2345e-10'],
  ['12345678901234567.0', '1.2345678901234566e+16'],
  ['999999999999999.9', '1000000000000000.0'],
  ['9e284', '9.000000000000001e+284'],
  ['1e15', '1000000000000000.0'],
  ['1e16', '1e+16'],
  ['1e-2147483649', '0.0'],
];

test('numbers are spelled as serde_json spells them', () => {
  for (const [text, expected] of NUMBERS) assert.equal(serdeNumberText(text), expected, text);
  for (const text of ['1e400', '1.7976931348623158e308', '1e2147483648']) {
    assert.throws(() => serdeNumberText(text), /number out of range/, text);
  }
});

test('number ids', { skip: !sourceText && 'this engine gives revivers no source text' }, async () => {
  serve({ [FEED]: json(`{"items":[${NUMBERS.map(([text]) => `{"id":${text}}`).join(',')}]}`) });
  const ids = (await poll.poll({ target: FEED })).items.map((item) => item.id);
  assert.deepEqual(ids, NUMBERS.map(([, expected]) => expected));
});

test('dates: RFC 3339 to UTC seconds', async () => {
  const cases = [
    ['2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z'],
    ['2024-01-01t00:30:00z', '2024-01-01T00:30:00Z'],
    ['2024-01-01 00:30:00+01:00', '2023-12-31T23:30:00Z'],
    ['2024-02-28T23:00:00-01:30', '2024-02-29T00:30:00Z'],
    ['2023-02-28T23:00:00\u221201:30', '2023-03-01T00:30:00Z'],
    ['2016-12-31T23:59:60Z', '2016-12-31T23:59:60Z'],
    ['2024-01-01T00:00:00.999999999999Z', '2024-01-01T00:00:00Z'],
    ['0000-01-01T00:00:00+01:00', '-0001-12-31T23:00:00Z'],
    ['9999-12-31T23:00:00-01:00', '+10000-01-01T00:00:00Z'],
    ['2024-01-01T00:00:00+23:59', '2023-12-31T00:01:00Z'],
    ['2024-01-01T00:00:00+24:00', undefined],
    ['2024-01-01T00:00:00+00:60', undefined],
    ['2024-01-01T00:00:00+0000', undefined],
    ['2024-01-01T00:00:00', undefined],
    ['2024-01-01T00:00Z', undefined],
    ['2024-01-01T00:00:00.Z', undefined],
    ['2024-02-30T00:00:00Z', undefined],
    ['2023-02-29T00:00:00Z', undefined],
    ['2024-13-01T00:00:00Z', undefined],
    ['2024-01-01T24:00:00Z', undefined],
    ['2024-01-01T00:00:61Z', undefined],
    ['2024-01-01T00:00:00Z ', undefined],
    ['2024-01-01T00:00:00Z\n', undefined],
    ['Mon, 01 Jan 2024 00:00:00 GMT', undefined],
    ['+2024-01-01T00:00:00Z', undefined],
  ];
  serve({ [FEED]: json({ items: cases.map(([text], i) => ({ id: String(i), date_published: text })) }) });
  const items = (await poll.poll({ target: FEED })).items;
  cases.forEach(([text, expected], i) => assert.equal(items[i].published, expected, text));
});

test('304 keeps the request validators unless the response has its own', async () => {
  serve({ [FEED]: status(304, { etag: '"v3"' }) });
  assert.deepEqual(await poll.poll({ target: FEED, etag: '"v2"', lastModified: 'then' }), {
    notModified: true,
    items: [],
    etag: '"v3"',
    lastModified: 'then',
    cursor: undefined,
    refreshAfterSeconds: undefined,
  });
});

test('status errors', async () => {
  const kinds = {
    400: 'permanent',
    401: 'permanent',
    403: 'permanent',
    404: 'transient',
    408: 'transient',
    410: 'permanent',
    429: 'rate-limited',
    451: 'permanent',
    500: 'transient',
    503: 'transient',
    599: 'transient',
    600: 'transient',
    302: 'transient', // a redirect without Location
    300: 'transient',
  };
  for (const [code, kind] of Object.entries(kinds)) {
    serve({ [FEED]: () => ({ status: Number(code), headers: new Headers() }) });
    assert.deepEqual(await failure({ target: FEED }), { kind, message: `HTTP ${code} from ${FEED}` });
  }
});

test('follows up to five redirects, resolving relative locations', async () => {
  const requests = serve({
    [FEED]: status(301, { location: '/r1' }),
    'http://feeds.test/r1': status(302, { location: 'r2?x=1' }),
    'http://feeds.test/r2?x=1': status(307, { location: 'https://other.test/r3' }),
    'https://other.test/r3': status(308, { location: '//third.test/r4' }),
    'https://third.test/r4': status(303, { location: 'http://third.test/r5' }),
    'http://third.test/r5': json({ items: [{ id: 'x' }] }),
  });
  const response = await poll.poll({ target: FEED, etag: 'e' });
  assert.deepEqual(response.items.map((item) => item.id), ['x']);
  assert.equal(requests.length, 6);
  assert.ok(requests.every((request) => request.headers['if-none-match'] === 'e'));

  serve({
    [FEED]: status(301, { location: '/r1' }),
    'http://feeds.test/r1': status(302, { location: '/r2' }),
    'http://feeds.test/r2': status(302, { location: '/r3' }),
    'http://feeds.test/r3': status(302, { location: '/r4' }),
    'http://feeds.test/r4': status(302, { location: '/r5' }),
    'http://feeds.test/r5': status(302, { location: '/r6' }),
  });
  assert.deepEqual(await failure({ target: FEED }), {
    kind: 'permanent',
    message: `too many redirects from ${FEED}`,
  });

  serve({
    [FEED]: status(302, { location: '/gone' }),
    'http://feeds.test/gone': status(410),
  });
  assert.deepEqual(await failure({ target: FEED }), {
    kind: 'permanent',
    message: 'HTTP 410 from http://feeds.test/gone',
  });
});

test('transport failures are transient', async () => {
  serve({});
  assert.deepEqual(await failure({ target: FEED }), {
    kind: 'transient',
    message: `${FEED}: connection refused`,
  });
  serve({
    [FEED]: () => ({
      status: 200,
      headers: new Headers(),
      arrayBuffer: async () => {
        throw new TypeError('body too large');
      },
    }),
  });
  assert.deepEqual(await failure({ target: FEED }), {
    kind: 'transient',
    message: `${FEED}: body too large`,
  });
});

test('bodies that are not a JSON Feed are bad responses', async () => {
  const cases = [
    ['<html></html>', /^JSON\.parse: /],
    ['', /^JSON\.parse: /],
    ['{"items": []} x', /^JSON\.parse: /],
    ['\ufeff{"items": []}', /^JSON\.parse: /],
    ['[]', /^the document is not an object$/],
    ['1', /^the document is not an object$/],
    ['null', /^the document is not an object$/],
    ['{}', /^no `items` array$/],
    ['{"items": {}}', /^no `items` array$/],
    ['{"items": [], "x": "\\ud800"}', /^lone surrogate in a string$/],
    ['{"items": [], "\\udc00": 1}', /^lone surrogate in a key$/],
    ['{"items": [], "x": 1e400}', /^number out of range$/],
    ...(sourceText ? [['{"items": [], "x": 1.7976931348623158e308}', /^number out of range$/]] : []),
    ['{"items": [], "x": ' + '['.repeat(127) + ']'.repeat(127) + '}', /^recursion limit exceeded$/],
  ];
  for (const [body, reason] of cases) {
    serve({ [FEED]: json(body) });
    const error = await failure({ target: FEED });
    assert.equal(error.kind, 'bad-response', body);
    const prefix = `${FEED}: not a JSON Feed: `;
    assert.ok(error.message.startsWith(prefix), error.message);
    // Node's JSON.parse words its errors differently from SpiderMonkey's.
    const text = error.message.slice(prefix.length);
    if (String(reason).startsWith('/^JSON')) assert.ok(text.length > 0);
    else assert.match(text, reason, body);
  }
  serve({ [FEED]: () => new Response(new Uint8Array([0x7b, 0xff, 0x7d]), { status: 200 }) });
  assert.deepEqual(await failure({ target: FEED }), {
    kind: 'bad-response',
    message: `${FEED}: not a JSON Feed: the body is not UTF-8`,
  });
  // 126 levels inside the top-level object: 127 in all, which serde_json still accepts.
  serve({ [FEED]: json('{"items": [], "x": ' + '['.repeat(126) + ']'.repeat(126) + '}') });
  assert.deepEqual((await poll.poll({ target: FEED })).items, []);
});
