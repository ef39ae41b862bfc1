// What both TypeScript flows share: where the service is, and a failing check.

declare const process: { env: Record<string, string | undefined>; exitCode?: number };

export const BASE_URL: string = process.env.BASE_URL ?? "http://127.0.0.1:8080";
export const TOKEN: string = process.env.TOKEN ?? "sandbox-token";
export const JOHN = "5f3feb7821046c3bb9327e6a";

export function check(condition: boolean, message: string): asserts condition {
  if (!condition) {
    throw new Error(`check failed: ${message}`);
  }
}

/** A local date `days` from today (UTC), as YYYY-MM-DD. */
export function dayFromNow(days: number): string {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function main(flow: () => Promise<void>): void {
  flow().then(
    () => console.log("flow ok"),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
