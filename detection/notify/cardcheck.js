#!/usr/bin/env node
// Checks Adaptive Cards with Microsoft's own adaptivecards SDK, and renders them to HTML for preview.
//
//   node detection/notify/cardcheck.js [--version 1.4] [--max-bytes 28000] [--html OUT [--before FRAGMENT] [--after FRAGMENT]] [FILE...]
//
// Each FILE (or stdin when none is given, or "-") holds one JSON value: an Adaptive Card, a Teams
// message envelope ({"type": "message", "attachments": [...]}), or an array of those. Every card is
// parsed with a SerializationContext for the target version and validated with validateProperties();
// on top of what the SDK reports, a property the SDK does not know (it silently drops those, so a typo
// would go unnoticed) or one newer than the target version, a card of another version and an envelope
// that is not the Workflows shape are problems too. One line per card goes to stdout ("ok NAME" or
// "FAIL NAME: problem"); the exit status is 1 when any card has a problem, 2 on unusable input.
// --html writes a page with every card rendered by the SDK; --before/--after add HTML fragments around them.
//
// The SDK's dist bundle is plain CommonJS and parses without a browser; only rendering needs a DOM,
// and the small one below is enough for the static HTML of the elements the SDK renders.
"use strict";

const fs = require("fs");
const path = require("path");

const SDK_DIR = path.join(__dirname, "..", "..", "node_modules", "adaptivecards", "dist");
const CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive";
const ROOT_EXTRAS = ["$schema", "msteams"]; // the schema pointer and Teams' extension
// Collections the SDK parses with its own code rather than through the element's property schema.
const COLLECTIONS = {
  AdaptiveCard: ["body", "actions"],
  Container: ["items"],
  Column: ["items"],
  ColumnSet: ["columns"],
  RichTextBlock: ["inlines"],
  ActionSet: ["actions"],
};
const ATTACHMENT_KEYS = new Set(["contentType", "contentUrl", "content", "name"]);

// ---- a minimal DOM, enough for AdaptiveCard.render() to build a static tree ----

function escapeHtml(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const kebab = (name) => name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

class StyleShim {
  setProperty(name, value) { this[camel(name)] = value; }
  removeProperty(name) { delete this[camel(name)]; }
  getPropertyValue(name) { return this[camel(name)] || ""; }
  toCss() {
    return Object.entries(this)
      .filter(([, value]) => value !== undefined && value !== null && value !== "")
      .map(([name, value]) => `${kebab(name)}: ${value}`).join("; ");
  }
}

class TextShim {
  constructor(text) { this.data = String(text); this.parentNode = null; }
  get textContent() { return this.data; }
  get outerHTML() { return escapeHtml(this.data); }
}

class ElementShim {
  constructor(tag) {
    this.tagName = String(tag).toUpperCase();
    this.childNodes = [];
    this.attributes = {};
    this.style = new StyleShim();
    this.className = "";
    this.parentNode = null;
    const classes = () => this.className.split(/\s+/).filter(Boolean);
    this.classList = {
      add: (...names) => { this.className = [...new Set([...classes(), ...names])].join(" "); },
      remove: (...names) => { this.className = classes().filter((c) => !names.includes(c)).join(" "); },
      contains: (name) => classes().includes(name),
      toggle: (name) => (classes().includes(name) ? this.classList.remove(name) : this.classList.add(name)),
    };
  }
  appendChild(node) {
    if (node.parentNode) node.parentNode.removeChild(node);
    this.childNodes.push(node);
    node.parentNode = this;
    return node;
  }
  insertBefore(node, before) {
    if (!before) return this.appendChild(node);
    if (node.parentNode) node.parentNode.removeChild(node);
    this.childNodes.splice(this.childNodes.indexOf(before), 0, node);
    node.parentNode = this;
    return node;
  }
  removeChild(node) {
    const at = this.childNodes.indexOf(node);
    if (at >= 0) this.childNodes.splice(at, 1);
    node.parentNode = null;
    return node;
  }
  get children() { return this.childNodes.filter((n) => n instanceof ElementShim); }
  get firstChild() { return this.childNodes[0] || null; }
  get lastChild() { return this.childNodes[this.childNodes.length - 1] || null; }
  get firstElementChild() { return this.children[0] || null; }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  getAttribute(name) { return name in this.attributes ? this.attributes[name] : null; }
  hasAttribute(name) { return name in this.attributes; }
  removeAttribute(name) { delete this.attributes[name]; }
  addEventListener() {}
  removeEventListener() {}
  focus() {}
  blur() {}
  get textContent() { return this.childNodes.map((n) => n.textContent).join(""); }
  set textContent(text) { this.childNodes = [new TextShim(text)]; }
  get innerText() { return this.textContent; }
  set innerText(text) { this.textContent = text; }
  set innerHTML(html) {
    // Only Markdown output is assigned as HTML, and Markdown processing is off for the preview.
    if (html !== "") throw new Error("the preview DOM does not parse HTML");
    this.childNodes = [];
  }
  get offsetHeight() { return 0; }
  get offsetWidth() { return 0; }
  get scrollHeight() { return 0; }
  get scrollWidth() { return 0; }
  get clientHeight() { return 0; }
  getBoundingClientRect() { return { top: 0, left: 0, right: 0, bottom: 0, width: 0, height: 0 }; }
  querySelector() { return null; }
  querySelectorAll() { return []; }
  getElementsByTagName(tag) {
    const wanted = String(tag).toUpperCase();
    return this.children.flatMap((child) => [
      ...(wanted === "*" || child.tagName === wanted ? [child] : []), ...child.getElementsByTagName(tag)]);
  }
  get outerHTML() {
    const tag = this.tagName.toLowerCase();
    let attrs = this.className ? ` class="${escapeHtml(this.className)}"` : "";
    const css = this.style.toCss();
    if (css) attrs += ` style="${escapeHtml(css)}"`;
    for (const [name, value] of Object.entries(this.attributes)) attrs += ` ${name}="${escapeHtml(value)}"`;
    return `<${tag}${attrs}>${this.childNodes.map((n) => n.outerHTML).join("")}</${tag}>`;
  }
}

function installDomShim() {
  if (typeof globalThis.document !== "undefined") return;
  const elementClass = (tag) => ({ [Symbol.hasInstance]: (o) => o instanceof ElementShim && o.tagName === tag });
  Object.assign(globalThis, {
    window: globalThis,
    HTMLElement: ElementShim,
    HTMLButtonElement: elementClass("BUTTON"),
    HTMLInputElement: elementClass("INPUT"),
    HTMLSelectElement: elementClass("SELECT"),
    document: {
      createElement: (tag) => new ElementShim(tag),
      createTextNode: (text) => new TextShim(text),
      body: new ElementShim("body"),
      documentElement: new ElementShim("html"),
      activeElement: null,
      addEventListener() {},
      removeEventListener() {},
      querySelector: () => null,
      querySelectorAll: () => [],
      getElementById: () => null,
    },
  });
}

installDomShim();
const AC = require(path.join(SDK_DIR, "adaptivecards.js"));
AC.AdaptiveCard.onProcessMarkdown = (_text, result) => { result.didProcess = false; };

// ---- checking ----

function propertyNames(object) {
  const schema = object.getSchema();
  const names = new Map();
  for (let i = 0; i < schema.getCount(); i++) {
    const property = schema.getItemAt(i);
    names.set(property.name, property.targetVersion);
  }
  return names;
}

function unknownProperties(object, source, version, where, extras = []) {
  const problems = [];
  if (!source || typeof source !== "object" || Array.isArray(source)) return problems;
  const known = propertyNames(object);
  const skip = new Set(["type", ...extras, ...(COLLECTIONS[where] || [])]);
  for (const key of Object.keys(source)) {
    if (skip.has(key)) continue;
    if (!known.has(key)) {
      problems.push(`${where}: unknown property "${key}" (the SDK drops it)`);
    } else if (known.get(key) && known.get(key).compareTo(version) > 0) {
      problems.push(`${where}: property "${key}" needs version ${known.get(key).toString()}`);
    }
  }
  return problems;
}

function checkCard(source, wanted) {
  const problems = [];
  if (!source || typeof source !== "object" || Array.isArray(source)) return { problems: ["not a JSON object"] };
  if (source.type !== "AdaptiveCard") problems.push(`type is ${JSON.stringify(source.type)}, not "AdaptiveCard"`);
  if (source.version !== wanted) problems.push(`version is ${JSON.stringify(source.version)}, not "${wanted}"`);
  const version = AC.Version.parse(wanted, new AC.SerializationContext());
  const context = new AC.SerializationContext(version);
  context.onParseElement = (element, json) => {
    problems.push(...unknownProperties(element, json, version, element.getJsonTypeName()));
  };
  context.onParseAction = (action, json) => {
    problems.push(...unknownProperties(action, json, version, action.getJsonTypeName()));
  };
  const card = new AC.AdaptiveCard();
  try {
    card.parse(source, context);
  } catch (error) {
    return { problems: [...problems, `parse error: ${error.message}`] };
  }
  problems.push(...unknownProperties(card, source, version, "AdaptiveCard", ROOT_EXTRAS));
  for (let i = 0; i < context.eventCount; i++) {
    const event = context.getEventAt(i);
    problems.push(`parse: ${AC.ValidationEvent[event.event]}: ${event.message}`);
  }
  for (const event of card.validateProperties().validationEvents) {
    problems.push(`validation: ${AC.ValidationEvent[event.event]}: ${event.message}`);
  }
  return { card, problems };
}

function cardsIn(value, name, maxBytes) {
  // -> [{name, source, problems}] for a card, an envelope, or an array of either.
  if (Array.isArray(value)) return value.flatMap((item, i) => cardsIn(item, `${name}[${i}]`, maxBytes));
  if (!value || typeof value !== "object" || value.type !== "message") return [{ name, source: value, problems: [] }];
  const problems = [];
  const size = Buffer.byteLength(JSON.stringify(value), "utf8");
  if (size > maxBytes) problems.push(`message is ${size} bytes, more than ${maxBytes}`);
  const attachments = value.attachments;
  if (!Array.isArray(attachments) || attachments.length === 0) {
    return [{ name, source: null, problems: [...problems, "message has no attachments"] }];
  }
  return attachments.map((attachment, i) => {
    const own = [...problems];
    for (const key of Object.keys(attachment || {})) {
      if (!ATTACHMENT_KEYS.has(key)) own.push(`attachment: unexpected key "${key}"`);
    }
    if (!attachment || attachment.contentType !== CARD_CONTENT_TYPE) own.push(`attachment contentType is not ${CARD_CONTENT_TYPE}`);
    if (!attachment || !("contentUrl" in attachment) || attachment.contentUrl !== null) own.push("attachment contentUrl must be null");
    return { name: attachments.length > 1 ? `${name}.attachments[${i}]` : name, source: attachment && attachment.content, problems: own };
  });
}

// ---- rendering ----

function renderCard(card) {
  const element = card.render();
  // Buttons open their URL through script in a live host; in a static page they become plain links.
  for (let i = 0; i < card.getActionCount(); i++) {
    const action = card.getActionAt(i);
    const button = action.renderedElement;
    if (button && action.url && /^https?:\/\//.test(action.url)) {
      button.tagName = "A";
      button.setAttribute("href", action.url);
      button.setAttribute("target", "_blank");
      button.setAttribute("rel", "noopener noreferrer");
    }
  }
  return element ? element.outerHTML : "<p>(the SDK rendered nothing)</p>";
}

function htmlPage(sections) {
  const css = fs.readFileSync(path.join(SDK_DIR, "adaptivecards.css"), "utf8");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Adaptive Card preview</title>
<style>${css}
body { font-family: 'Segoe UI', sans-serif; background: #f5f5f5; margin: 2em; }
.card-preview { max-width: 640px; margin: 0 0 2em; background: #fff; box-shadow: 0 1px 4px rgba(0,0,0,.2); }
a.ac-pushButton { text-decoration: none; display: inline-flex; align-items: center; justify-content: center; }
</style></head><body>
${sections}
</body></html>
`;
}

// ---- command line ----

function parseArgs(argv) {
  const options = { version: "1.4", maxBytes: 28000, html: null, before: null, after: null, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--version") options.version = argv[++i];
    else if (arg === "--max-bytes") options.maxBytes = Number(argv[++i]);
    else if (arg === "--html") options.html = argv[++i];
    else if (arg === "--before") options.before = argv[++i];
    else if (arg === "--after") options.after = argv[++i];
    else if (arg === "-h" || arg === "--help") options.help = true;
    else if (arg.startsWith("--")) throw new Error(`unknown option ${arg}`);
    else options.files.push(arg);
  }
  if (!options.version || !/^\d+\.\d+$/.test(options.version)) throw new Error("--version needs a version such as 1.4");
  if (!Number.isFinite(options.maxBytes) || options.maxBytes <= 0) throw new Error("--max-bytes needs a positive number");
  if (options.html === undefined) throw new Error("--html needs a file name");
  if (options.before === undefined || options.after === undefined) throw new Error("--before/--after need a file name");
  return options;
}

function readInputs(files) {
  const sources = files.length ? files : ["-"];
  return sources.map((file) => {
    const name = file === "-" ? "stdin" : file;
    const text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
    try {
      return { name, value: JSON.parse(text) };
    } catch (error) {
      throw new Error(`${name}: not JSON: ${error.message}`);
    }
  });
}

function main(argv) {
  let options;
  let inputs;
  try {
    options = parseArgs(argv);
    if (options.help) {
      process.stdout.write("usage: cardcheck.js [--version 1.4] [--max-bytes 28000] [--html OUT [--before FRAGMENT] [--after FRAGMENT]] [FILE...]\n");
      return 0;
    }
    inputs = readInputs(options.files);
  } catch (error) {
    process.stderr.write(`cardcheck: ${error.message}\n`);
    return 2;
  }
  let failed = 0;
  const sections = [];
  for (const input of inputs) {
    for (const item of cardsIn(input.value, input.name, options.maxBytes)) {
      const { card, problems } = item.source === null ? { problems: [] } : checkCard(item.source, options.version);
      const all = [...item.problems, ...problems];
      if (all.length) {
        failed++;
        for (const problem of all) process.stdout.write(`FAIL ${item.name}: ${problem}\n`);
      } else {
        process.stdout.write(`ok ${item.name}\n`);
      }
      if (options.html && card) {
        let html;
        try {
          html = renderCard(card);
        } catch (error) {
          html = `<p>render error: ${escapeHtml(error.message)}</p>`;
          failed++;
          process.stdout.write(`FAIL ${item.name}: render error: ${error.message}\n`);
        }
        sections.push(`<section class="card-preview" data-name="${escapeHtml(item.name)}">${html}</section>`);
      }
    }
  }
  if (options.html) {
    const fragment = (file) => (file ? fs.readFileSync(file, "utf8") + "\n" : "");
    const body = fragment(options.before) + sections.join("\n") + "\n" + fragment(options.after);
    fs.writeFileSync(options.html, htmlPage(body), "utf8");
  }
  return failed ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
