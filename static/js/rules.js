// A respond listener's rules, read from its document and edited in place
// (PUT /api/listeners/{id}/rules, validated by the same rule model as at creation).
import { $, api, markField, showError } from "./util.js";

const rulesForm = $("#rules-form");
let rulesFor = null;

export async function openRules(id) {
  $("#rules-error").hidden = true;
  $("#rules-msg").textContent = "";
  markField(rulesForm, null);
  try {
    const doc = await api("GET", `/api/listeners/${encodeURIComponent(id)}`);
    const respond = doc.respond || {};
    const rules = (respond.rules || []).map(({ hits, ...rule }) => rule);
    rulesFor = id;
    $("#rules-id").textContent = id;
    $("#rules-json").value = JSON.stringify(rules, null, 2);
    $("#rules-default").value = respond.default_reply ?? "";
    $("#rules-encoding").value = (doc.options && doc.options.encoding) || "text";
    $("#rules-editor").hidden = false;
    $("#rules-json").focus();
  } catch (err) {
    showError($("#rules-error"), err);
    $("#rules-editor").hidden = false;
  }
}

rulesForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#rules-error").hidden = true;
  markField(rulesForm, null);
  try {
    let rules;
    try { rules = JSON.parse($("#rules-json").value || "[]"); } catch (e) {
      throw Object.assign(new Error("rules: not valid JSON"), { field: "rules" });
    }
    const body = { rules, encoding: $("#rules-encoding").value };
    const reply = $("#rules-default").value;
    if (reply !== "") body.default_reply = reply;
    const doc = await api("PUT", `/api/listeners/${encodeURIComponent(rulesFor)}/rules`, body);
    $("#rules-msg").textContent = `Saved: ${doc.respond.rules.length} rules.`;
  } catch (err) {
    markField(rulesForm, err.field && err.field.startsWith("rules") ? "rules" : err.field);
    showError($("#rules-error"), err);
  }
});
$("#rules-close").addEventListener("click", () => { $("#rules-editor").hidden = true; rulesFor = null; });
