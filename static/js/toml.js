// A scenario document written as TOML, for the Scenarios text view: what a scenario file
// passed to `socketlab fire --scenario FILE.toml` looks like. Writing only: TOML is read
// by the lab (POST /api/scenarios/parse), which checks it as it checks any scenario.

// A TOML basic string: JSON's escapes (\" \\ \n \t \uXXXX) are TOML's too.
const str = (s) => JSON.stringify(s);
const bare = (k) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : str(k));

function value(v) {
  if (typeof v === "string") return str(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map(value).join(", ")}]`;
  if (v && typeof v === "object") return inline(v);
  throw new Error(`no TOML for ${v}`);
}

function inline(obj) {
  const parts = Object.entries(obj).filter(([, v]) => v != null).map(([k, v]) => `${bare(k)} = ${value(v)}`);
  return `{ ${parts.join(", ")} }`;
}

/** The TOML text of a scenario document ({name, max_reply, steps: [...]}). */
export function scenarioToml(doc) {
  const lines = [];
  for (const [k, v] of Object.entries(doc)) {
    if (k !== "steps" && v != null) lines.push(`${bare(k)} = ${value(v)}`);
  }
  for (const step of doc.steps || []) {
    lines.push("", "[[steps]]");
    for (const [k, v] of Object.entries(step)) {
      if (v == null) continue;
      if (k === "steps" && Array.isArray(v)) {
        lines.push("steps = [", ...v.map((s) => `  ${inline(s)},`), "]");
      } else {
        lines.push(`${bare(k)} = ${value(v)}`);
      }
    }
  }
  return `${lines.join("\n").replace(/^\n/, "")}\n`;
}
