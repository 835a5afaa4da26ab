// A throw-away self-signed certificate for chatgpt.com, made for each run with
// the openssl command line; Chromium is told to accept it
// (--ignore-certificate-errors), so nothing is installed anywhere.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export function makeCertificate(dir) {
  const key = join(dir, "standin.key");
  const cert = join(dir, "standin.crt");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
      "-subj", "/CN=chatgpt.com", "-addext", "subjectAltName=DNS:chatgpt.com"],
    { stdio: "ignore" },
  );
  return { key: readFileSync(key), cert: readFileSync(cert) };
}
