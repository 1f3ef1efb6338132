// Who may talk to the dashboard: the Host header must name the address it listens on (no DNS
// rebinding), reads need the token (from the start-up URL's ?token=, kept in a same-site cookie,
// or an `Authorization: token T` header), and every action is a POST that carries the token in a
// header and comes from the dashboard's own origin.
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";

export interface AccessOptions {
  /** The address it listens on. */
  host: string;
  port: number;
  /** undefined: no token (loopback only). */
  token: string | undefined;
}

/** 127.0.0.1, ::1, localhost and the rest of 127/8. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || (isIP(host) === 4 && host.startsWith("127."));
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

export function newToken(): string {
  return randomBytes(24).toString("hex");
}

/** The cookie name includes the port: two dashboards on one host keep their own tokens. */
export function cookieName(port: number): string {
  return `nbjob_dashboard_${port}`;
}

function sameToken(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieToken(req: IncomingMessage, port: number): string | undefined {
  const name = cookieName(port);
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return undefined;
}

function headerToken(req: IncomingMessage): string | undefined {
  const direct = req.headers["x-nbjob-token"];
  if (typeof direct === "string") return direct;
  const match = /^token\s+(\S+)$/i.exec(req.headers.authorization ?? "");
  return match?.[1];
}

/** The Host values a request may carry: the listen address (and its loopback names) with the port. */
export function allowedHosts(options: AccessOptions): Set<string> | "any" {
  // Bound to every interface, the dashboard cannot know which names reach it; the token (always
  // required there) and its host-bound cookie are then what keep a rebound name out.
  if (isWildcard(options.host)) return "any";
  const names = isLoopback(options.host) ? ["127.0.0.1", "localhost", "[::1]", options.host] : [isIP(options.host) === 6 ? `[${options.host}]` : options.host];
  return new Set(names.map((name) => `${name.toLowerCase()}:${options.port}`));
}

export type Verdict = { ok: true; setCookie?: string } | { ok: false; status: number; message: string };

/** Checks a request before any route sees it. */
export function checkRequest(req: IncomingMessage, url: URL, options: AccessOptions, hosts: Set<string> | "any"): Verdict {
  const host = (req.headers.host ?? "").toLowerCase();
  if (hosts !== "any" && !hosts.has(host)) {
    return { ok: false, status: 421, message: `this dashboard answers only requests to ${[...hosts][0]} (the request named host "${host}")` };
  }
  const isAction = req.method === "POST";
  if (isAction) {
    // A browser always sends Origin with a POST from a page; it must be this dashboard's own.
    const origin = req.headers.origin;
    if (origin !== undefined && origin.toLowerCase() !== `http://${host}`) {
      return { ok: false, status: 403, message: `actions are accepted only from the dashboard's own pages (origin ${origin} is not http://${host})` };
    }
    if (options.token !== undefined && !sameToken(headerToken(req), options.token)) {
      return { ok: false, status: 403, message: "this action needs the dashboard's token (header X-Nbjob-Token or Authorization: token T)" };
    }
    return { ok: true };
  }
  if (options.token === undefined) return { ok: true };
  const fromQuery = url.searchParams.get("token") ?? undefined;
  if (sameToken(fromQuery, options.token)) {
    return { ok: true, setCookie: `${cookieName(options.port)}=${encodeURIComponent(options.token)}; Path=/; HttpOnly; SameSite=Strict` };
  }
  if (sameToken(cookieToken(req, options.port), options.token) || sameToken(headerToken(req), options.token)) return { ok: true };
  return { ok: false, status: 403, message: "this dashboard needs its token: open the URL it printed at start (…/?token=…), or send Authorization: token T" };
}
