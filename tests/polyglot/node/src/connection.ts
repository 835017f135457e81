// A gRPC connection to a Taskyard scheduler, with a bearer token.
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

export function connect(address: string, token?: string): Transport {
  const bearer: Interceptor = (next) => async (request) => {
    if (token) request.header.set("authorization", `Bearer ${token}`);
    return await next(request);
  };
  return createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [bearer] });
}

export function check(condition: unknown, what: string): void {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}
