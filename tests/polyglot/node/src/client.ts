// A Taskyard client in TypeScript, from protos/ alone: submit, follow the
// logs, watch, get, list, upload and download with verification, and the
// rich error details of a refused call.
import { createHash, randomBytes } from "node:crypto";
import { ConnectError, Code, createClient } from "@connectrpc/connect";
import { ArtifactService } from "../gen/taskyard/v1/artifacts_pb.js";
import {
  LogStream,
  WorkRequestResult,
  WorkRequestService,
  WorkRequestState,
} from "../gen/taskyard/v1/work_requests_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { check, connect } from "./connection.js";

const [address, token] = process.argv.slice(2);
const transport = connect(address, token);
const requests = createClient(WorkRequestService, transport);
const artifacts = createClient(ArtifactService, transport);

// Submit, then follow its output live.
const script = "echo one; echo two >&2; echo three; exit 3";
const submitted = await requests.submit({
  taskName: "command",
  taskDataJson: JSON.stringify({ command: ["sh", "-c", script] }),
});
const id = submitted.workRequest!.id;
check(id.length > 0, `submitted ${id}`);
let stdout = "";
let stderr = "";
for await (const chunk of requests.logs({ id, follow: true })) {
  const text = new TextDecoder().decode(chunk.data);
  if (chunk.stream === LogStream.STDOUT) stdout += text;
  if (chunk.stream === LogStream.STDERR) stderr += text;
}
check(stdout === "one\nthree\n" && stderr === "two\n", "logs followed to the end");

// Watch it end; get it; find it in a list.
let last = undefined;
for await (const change of requests.watch({ id })) last = change.workRequest;
check(last?.state === WorkRequestState.COMPLETED, "watched until completed");
const got = (await requests.get({ id })).workRequest!;
check(got.result === WorkRequestResult.FAILURE, "the result is a failure");
check(JSON.parse(got.detailsJson).exit_code === 3, "the exit code is in the record");
check(got.error?.reason === "exit-code", "the failure says why");
const listed = await requests.list({ pageSize: 10 });
check(listed.workRequests.some((w) => w.id === id), "listed");

// A refused call's rich details.
try {
  await requests.submit({ taskName: "noop", taskDataJson: '{"sleep": -1}' });
  check(false, "invalid task data is refused");
} catch (error) {
  const refused = ConnectError.from(error);
  check(refused.code === Code.InvalidArgument, "INVALID_ARGUMENT");
  const [info] = refused.findDetails(ErrorInfoSchema);
  check(info?.reason === "TASK_DATA_INVALID", `ErrorInfo reason ${info?.reason}`);
  const [bad] = refused.findDetails(BadRequestSchema);
  check(bad?.fieldViolations[0]?.field === "task_data_json.sleep", "BadRequest field violation");
}

// Upload in chunks with explicit offsets, then download and verify.
const content = randomBytes(300 * 1024);
const sha256 = createHash("sha256").update(content).digest("hex");
const created = await artifacts.createArtifact({
  category: "polyglot:node",
  dataJson: '{"from": "node"}',
  files: [{ path: "data.bin", size: BigInt(content.length), sha256 }],
});
const artifactId = created.artifact!.id;
check(created.missingPaths.includes("data.bin"), "the scheduler asks for the content");
async function* chunks() {
  const size = 64 * 1024;
  for (let offset = 0; offset < content.length; offset += size) {
    const data = content.subarray(offset, offset + size);
    yield {
      artifactId,
      path: "data.bin",
      offset: BigInt(offset),
      data,
      finishWrite: offset + size >= content.length,
    };
  }
}
const uploaded = await artifacts.uploadFile(chunks());
check(uploaded.artifactComplete, "uploaded and verified");
const parts: Uint8Array[] = [];
for await (const piece of artifacts.downloadArtifact({ artifactId })) {
  if (piece.data.length > 0) parts.push(piece.data);
}
const downloaded = Buffer.concat(parts);
check(createHash("sha256").update(downloaded).digest("hex") === sha256, "downloaded, verified");
console.log("node client: every step passed");
