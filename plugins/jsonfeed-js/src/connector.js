// tsunagi JSON Feed connector, in JavaScript: a `poller` component (wit/connector.wit) that
// fetches a JSON Feed (https://jsonfeed.org, versions 1 and 1.1) with a conditional GET and turns
// its items into tsunagi items.
//
// Built into a WebAssembly component by componentize-js (see ./build). How componentize-js maps
// the WIT world onto this module:
// - the export `tsunagi:connector/poll` is the exported object `poll` with a method `poll`; it
//   may be async (componentize-js runs the event loop until the promise settles);
// - records are plain objects with camelCase fields, `option<T>` is a value or `undefined`,
//   enums are their WIT names as strings ("bad-response", "warn");
// - `result<poll-response, connector-error>`: returning a value is `ok`; throwing an object with
//   an own `payload` property is `err(payload)` (see ConnectorError below). Any other thrown
//   Error traps the call, like a panic in a Rust plugin.
// - imports are ES module imports named by interface.
//
// Outgoing HTTP is the standard `fetch()`, which StarlingMonkey implements with
// `wasi:http/outgoing-handler`; the host applies its egress rules, timeouts and size caps there.
//
// Behaviour matches the Rust twin item for item: see README.md.

import { log } from 'tsunagi:connector/log@0.1.3';

const ACCEPT = 'application/feed+json, application/json;q=0.9, */*;q=0.5';
const USER_AGENT = 'tsunagi-jsonfeed/0.1';
/** Redirects followed before a poll gives up. */
const MAX_REDIRECTS = 5;

/** A failed poll: componentize-js lowers `payload` into the WIT `connector-error`. */
class ConnectorError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'ConnectorError';
    this.payload = { kind, message };
  }
}

export const poll = {
  async poll(request) {
    const headers = [
      ['accept', ACCEPT],
      ['user-agent', USER_AGENT],
    ];
    if (request.etag !== undefined) headers.push(['if-none-match', request.etag]);
    if (request.lastModified !== undefined) {
      headers.push(['if-modified-since', request.lastModified]);
    }

    let url = request.target;
    for (let hops = 0; ; hops++) {
      const response = await get(url, headers);
      const status = response.status;
      if (status === 304) {
        return {
          notModified: true,
          items: [],
          etag: header(response, 'etag') ?? request.etag,
          lastModified: header(response, 'last-modified') ?? request.lastModified,
          cursor: undefined,
          refreshAfterSeconds: undefined,
        };
      }
      if (status >= 200 && status <= 299) return fetched(url, response);
      if (status >= 300 && status <= 399) {
        const next = redirectTarget(url, response.headers.get('location'));
        if (next !== undefined) {
          if (hops >= MAX_REDIRECTS) {
            throw new ConnectorError('permanent', `too many redirects from ${request.target}`);
          }
          url = next;
          continue;
        }
        // A 3xx without a usable Location falls through to "unexpected status".
      }
      throw new ConnectorError(statusKind(status), `HTTP ${status} from ${url}`);
    }
  },
};

/**
 * One GET. StarlingMonkey's fetch() makes exactly one `wasi:http` request and never follows
 * redirects; `redirect: 'manual'` says the same to any other engine. A transport failure is
 * `transient`.
 */
async function get(url, headers) {
  try {
    return await fetch(url, { method: 'GET', headers, redirect: 'manual' });
  } catch (error) {
    throw transportError(url, error);
  }
}

function transportError(url, error) {
  // Running out of memory is the plugin's failure, not the upstream's: let the call trap, as a
  // Rust plugin's allocation failure does.
  if (outOfMemory(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ConnectorError('transient', `${url}: ${message}`);
}

function outOfMemory(error) {
  return /out of memory/i.test(error instanceof Error ? error.message : String(error));
}

/** What a failure status means. */
function statusKind(status) {
  if (status === 429) return 'rate-limited';
  if (status === 410) return 'permanent';
  if (status === 404 || status === 408) return 'transient';
  if (status >= 500 && status <= 599) return 'transient';
  if (status >= 400 && status <= 499) return 'permanent';
  return 'transient';
}

/** `location` resolved against the URL that answered with it; `undefined` if unusable. */
function redirectTarget(from, location) {
  if (location === null) return undefined;
  try {
    return new URL(location, from).href;
  } catch {
    return undefined;
  }
}

/** A response header, or `undefined` when absent. */
function header(response, name) {
  return response.headers.get(name) ?? undefined;
}

async function fetched(url, response) {
  const etag = header(response, 'etag');
  const lastModified = header(response, 'last-modified');
  let body;
  try {
    body = new Uint8Array(await response.arrayBuffer());
  } catch (error) {
    throw transportError(url, error);
  }
  const feed = parseFeed(url, body);
  const items = [];
  for (const element of feed.items) {
    const item = mapItem(element);
    if (item === undefined) {
      log('warn', 'skipped an item without id');
    } else {
      items.push(item);
    }
  }
  return {
    notModified: false,
    items,
    etag,
    lastModified,
    cursor: undefined,
    refreshAfterSeconds: undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// JSON. JSON.parse accepts the same grammar as serde_json; the checks around it make it refuse
// what serde_json (the Rust twin's parser) refuses: bytes that are not UTF-8 (a BOM is not
// skipped), strings with unpaired surrogates, numbers serde_json finds out of range, nesting of
// 128 levels. Every number is re-read from its source text the way serde_json reads it, so an
// `id` that is a number is spelled as serde_json spells it.

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** serde_json's default recursion limit: 128 nested arrays/objects fail. */
const MAX_DEPTH = 127;

/** A JSON number, as serde_json would display it. */
class JsonNumber {
  constructor(text) {
    this.text = text;
  }
}

class JsonProblem extends Error {}

function reviver(key, value, context) {
  if (!key.isWellFormed()) throw new JsonProblem('lone surrogate in a key');
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) throw new JsonProblem('lone surrogate in a string');
      return value;
    case 'number':
      // SpiderMonkey passes the number's source text (JSON.parse source text access).
      if (typeof context?.source === 'string') return new JsonNumber(serdeNumberText(context.source));
      if (!Number.isFinite(value)) throw new JsonProblem('number out of range');
      return new JsonNumber(guessedNumberText(value));
    default:
      return value;
  }
}

function notAFeed(url, reason) {
  return new ConnectorError('bad-response', `${url}: not a JSON Feed: ${reason}`);
}

function parseFeed(url, body) {
  let text;
  try {
    text = UTF8.decode(body);
  } catch {
    throw notAFeed(url, 'the body is not UTF-8');
  }
  let document;
  try {
    document = JSON.parse(text, reviver);
  } catch (error) {
    if (error instanceof JsonProblem || error instanceof SyntaxError) {
      throw notAFeed(url, error.message);
    }
    // SpiderMonkey's InternalError; serde_json stops at 128 levels long before.
    if (/too much recursion/.test(error?.message)) {
      throw notAFeed(url, 'recursion limit exceeded');
    }
    throw error; // out of memory: the call traps
  }
  if (isContainer(document) && tooDeep(document)) {
    throw notAFeed(url, 'recursion limit exceeded');
  }
  if (!isObject(document)) throw notAFeed(url, 'the document is not an object');
  const items = own(document, 'items');
  if (!Array.isArray(items)) throw notAFeed(url, 'no `items` array');
  return { items };
}

/** Whether arrays/objects nest deeper than serde_json allows (the recursion stops there). */
function tooDeep(value, depth = 1) {
  if (depth > MAX_DEPTH) return true;
  if (Array.isArray(value)) {
    for (const child of value) {
      if (isContainer(child) && tooDeep(child, depth + 1)) return true;
    }
  } else {
    for (const key in value) {
      const child = value[key];
      if (isContainer(child) && tooDeep(child, depth + 1)) return true;
    }
  }
  return false;
}

function isContainer(value) {
  return value !== null && typeof value === 'object' && !(value instanceof JsonNumber);
}

function isObject(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    !(value instanceof JsonNumber)
  );
}

/** An object's own member (never something inherited, such as `constructor`). */
function own(object, key) {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

function string(value) {
  return typeof value === 'string' ? value : undefined;
}

// ---------------------------------------------------------------------------------------------
// Items.

function mapItem(element) {
  if (!isObject(element)) return undefined;
  const id = idText(own(element, 'id'));
  if (id === undefined) return undefined;
  return {
    id,
    title: string(own(element, 'title')),
    link: string(own(element, 'url')) ?? string(own(element, 'external_url')),
    published: utcTimestamp(string(own(element, 'date_published'))),
    updated: utcTimestamp(string(own(element, 'date_modified'))),
    authors: authors(element),
    summary: string(own(element, 'summary')),
    content: string(own(element, 'content_html')) ?? string(own(element, 'content_text')),
    categories: strings(own(element, 'tags')),
  };
}

/** A string id as is, a number id in decimal; anything else is no id. */
function idText(value) {
  if (typeof value === 'string') return value;
  if (value instanceof JsonNumber) return value.text;
  return undefined;
}

/** Names from `authors` (JSON Feed 1.1) or, when that is absent, `author` (1.0). */
function authors(element) {
  if (Object.hasOwn(element, 'authors')) {
    const list = element.authors;
    if (!Array.isArray(list)) return [];
    const names = [];
    for (const author of list) {
      const name = authorName(author);
      if (name !== undefined) names.push(name);
    }
    return names;
  }
  const name = authorName(own(element, 'author'));
  return name === undefined ? [] : [name];
}

function authorName(author) {
  return isObject(author) ? string(own(author, 'name')) : undefined;
}

/** The string elements of an array; nothing for anything else. */
function strings(value) {
  return Array.isArray(value) ? value.filter((element) => typeof element === 'string') : [];
}

// ---------------------------------------------------------------------------------------------
// Numbers, spelled as serde_json (1.0.154, default features) parses and displays them: integers
// that fit u64 (or i64, when negative) as written; anything else becomes an f64 the way serde_json
// computes it (its fast parse, which can be one ulp off the correctly rounded value), displayed in
// zmij's shortest round-trip form ("1.0", "0.00001", "1e+21", "-0.0"). A number serde_json cannot
// represent ("1e400") fails the whole document, as it does there.

const U64_MAX = 18446744073709551615n;
const I64_MIN_MAGNITUDE = 9223372036854775808n;
const I32_MAX = 2147483647;
const I32_MIN = -2147483648;
const POW10 = Array.from({ length: 309 }, (_, i) => Number(`1e${i}`));

/** serde_json's `Number::to_string()` of a JSON number (valid JSON number text). */
function serdeNumberText(text) {
  let at = 0;
  const digitAt = () => {
    const code = text.charCodeAt(at);
    return code >= 48 && code <= 57 ? code - 48 : -1;
  };
  const overflows = (value, digit, max) => value * 10n + BigInt(digit) > max;

  function fromParts(positive, significand, exponent) {
    let f = Number(significand);
    for (;;) {
      const index = Math.abs(exponent);
      if (index < POW10.length) {
        if (exponent >= 0) {
          f *= POW10[index];
          if (!Number.isFinite(f)) throw new JsonProblem('number out of range');
        } else {
          f /= POW10[index];
        }
        break;
      }
      if (f === 0) break;
      if (exponent >= 0) throw new JsonProblem('number out of range');
      f /= 1e308;
      exponent += 308;
    }
    return positive ? f : -f;
  }

  function exponentPart(positive, significand, startingExponent) {
    at++; // e or E
    let positiveExponent = true;
    if (text[at] === '+') at++;
    else if (text[at] === '-') {
      positiveExponent = false;
      at++;
    }
    let exponent = digitAt();
    at++;
    for (let digit = digitAt(); digit >= 0; digit = digitAt()) {
      at++;
      if (exponent >= 214748364 && (exponent > 214748364 || digit > 7)) {
        if (significand !== 0n && positiveExponent) throw new JsonProblem('number out of range');
        return positive ? 0 : -0;
      }
      exponent = exponent * 10 + digit;
    }
    const total = positiveExponent ? startingExponent + exponent : startingExponent - exponent;
    return fromParts(positive, significand, Math.min(I32_MAX, Math.max(I32_MIN, total)));
  }

  function rest(positive, significand, exponent) {
    for (; digitAt() >= 0; at++);
    return text[at] === 'e' || text[at] === 'E'
      ? exponentPart(positive, significand, exponent)
      : fromParts(positive, significand, exponent);
  }

  function decimal(positive, significand, exponentBefore) {
    at++; // .
    let exponentAfter = 0;
    for (let digit = digitAt(); digit >= 0; digit = digitAt()) {
      if (overflows(significand, digit, U64_MAX)) {
        return rest(positive, significand, exponentBefore + exponentAfter);
      }
      at++;
      significand = significand * 10n + BigInt(digit);
      exponentAfter--;
    }
    const exponent = exponentBefore + exponentAfter;
    return text[at] === 'e' || text[at] === 'E'
      ? exponentPart(positive, significand, exponent)
      : fromParts(positive, significand, exponent);
  }

  function longInteger(positive, significand) {
    let exponent = 0;
    for (; digitAt() >= 0; at++) exponent++;
    if (text[at] === '.') return decimal(positive, significand, exponent);
    if (text[at] === 'e' || text[at] === 'E') return exponentPart(positive, significand, exponent);
    return fromParts(positive, significand, exponent);
  }

  const positive = text[0] !== '-';
  if (!positive) at++;
  let significand = BigInt(digitAt());
  at++;
  if (significand !== 0n) {
    for (let digit = digitAt(); digit >= 0; digit = digitAt()) {
      if (overflows(significand, digit, U64_MAX)) {
        return shortestFloat(longInteger(positive, significand));
      }
      at++;
      significand = significand * 10n + BigInt(digit);
    }
  }
  if (text[at] === '.') return shortestFloat(decimal(positive, significand, 0));
  if (text[at] === 'e' || text[at] === 'E') {
    return shortestFloat(exponentPart(positive, significand, 0));
  }
  if (positive) return significand.toString();
  if (significand === 0n || significand > I64_MIN_MAGNITUDE) {
    return shortestFloat(-Number(significand));
  }
  return `-${significand}`;
}

/** The id text of a number when the engine gives no source text: a best guess. */
function guessedNumberText(value) {
  if (Number.isSafeInteger(value) && !Object.is(value, -0)) return String(value);
  return shortestFloat(value);
}

/** zmij's `format_finite` of an f64, as serde_json uses it. */
function shortestFloat(value) {
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  const sign = value < 0 ? '-' : '';
  // toExponential() without an argument gives the shortest digits that round-trip.
  const [mantissa, exponentText] = Math.abs(value).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const exponent = Number(exponentText); // |value| = d.ddd × 10^exponent
  if (exponent >= -5 && exponent <= 15) {
    if (digits.length - 1 <= exponent) {
      return `${sign}${digits}${'0'.repeat(exponent - digits.length + 1)}.0`;
    }
    if (exponent >= 0) {
      return `${sign}${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
    }
    return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
  }
  const fraction = digits.length === 1 ? '' : `.${digits.slice(1)}`;
  return `${sign}${digits[0]}${fraction}e${exponent < 0 ? '-' : '+'}${Math.abs(exponent)}`;
}

// ---------------------------------------------------------------------------------------------
// Timestamps: RFC 3339 as chrono's `DateTime::parse_from_rfc3339` reads it (`T`, `t` or a space
// between date and time, any number of fraction digits, `Z`/`z` or an offset up to ±23:59, a
// leap second `:60`), converted to UTC and written `YYYY-MM-DDTHH:MM:SSZ` as chrono's
// `to_rfc3339_opts(SecondsFormat::Secs, true)` writes it.

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|([+\-\u2212])(\d{2}):(\d{2}))$/;

function utcTimestamp(text) {
  if (text === undefined) return undefined;
  const match = RFC3339.exec(text);
  if (match === null) return undefined;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  let offset = 0;
  if (match[7] !== undefined) {
    const offsetHours = Number(match[8]);
    const offsetMinutes = Number(match[9]);
    if (offsetHours > 23 || offsetMinutes > 59) return undefined;
    offset = (offsetHours * 60 + offsetMinutes) * (match[7] === '+' ? 1 : -1);
  }
  const minutes = daysFromCivil(year, month, day) * 1440 + hour * 60 + minute - offset;
  const days = Math.floor(minutes / 1440);
  const minuteOfDay = minutes - days * 1440;
  const [y, m, d] = civilFromDays(days);
  return (
    `${yearText(y)}-${pad2(m)}-${pad2(d)}` +
    `T${pad2(Math.floor(minuteOfDay / 60))}:${pad2(minuteOfDay % 60)}:${pad2(second)}Z`
  );
}

function pad2(n) {
  return String(n).padStart(2, '0');
}

/** Four digits within 0..=9999, else a sign and at least four digits (Rust's `{:+05}`). */
function yearText(year) {
  if (year >= 0 && year <= 9999) return String(year).padStart(4, '0');
  return (year < 0 ? '-' : '+') + String(Math.abs(year)).padStart(4, '0');
}

function isLeapYear(year) {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysInMonth(year, month) {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

// Days since 1970-01-01 in the proleptic Gregorian calendar, and back (H. Hinnant's algorithms).
function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

function civilFromDays(days) {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const dayOfEra = z - era * 146097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36524) - Math.floor(dayOfEra / 146096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const mp = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day];
}
