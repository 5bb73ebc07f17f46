// TLS-only fields: "accept any certificate" applies to tls:// targets alone (the run spec
// models refuse it for others), so the forms show it only for those.

/** Whether a target URL is a TLS one. */
export function isTls(url) {
  return /^tls:\/\//i.test(String(url || "").trim());
}
