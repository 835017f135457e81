// A Taskyard worker in TypeScript, from protos/ alone: it registers, says
// hello (protocol 2, with the `noop:version` key matching needs), takes one
// assignment, uploads an artifact under its lease and reports how it ended.
import { createHash, randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { ArtifactService } from "../gen/taskyard/v1/artifacts_pb.js";
import {
  ReportKind,
  WorkOutcome,
  WorkerService,
  type SessionRequest,
} from "../gen/taskyard/v1/workers_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SessionRequestSchema } from "../gen/taskyard/v1/workers_pb.js";
import { check, connect } from "./connection.js";

type Outgoing = MessageInitShape<typeof SessionRequestSchema>;

const [address] = process.argv.slice(2);
const token = randomBytes(32).toString("hex"); // 64 characters, kept by a real worker
const registered = await createClient(WorkerService, connect(address)).register({
  name: "node-worker",
  token,
});
check(registered.name.startsWith("node-worker"), `registered as ${registered.name}`);
const transport = connect(address, token);
const workers = createClient(WorkerService, transport);
const artifacts = createClient(ArtifactService, transport);

// What the worker sends: a queue the session reads from.
const queue: Outgoing[] = [];
let wake: (() => void) | undefined;
let done = false;
function send(message: Outgoing): void {
  queue.push(message);
  wake?.();
}
async function* outgoing(): AsyncGenerator<Outgoing> {
  while (!done) {
    while (queue.length > 0) yield queue.shift()!;
    await new Promise<void>((resolve) => (wake = resolve));
  }
}

send({
  message: {
    case: "hello",
    value: {
      protocolVersion: 2,
      slots: 1,
      metadataJson: JSON.stringify({ "noop:version": 1 }),
      taskyardVersion: "node-example",
    },
  },
});

for await (const response of workers.session(outgoing())) {
  const message = response.message;
  if (message.case === "welcome") {
    check(true, `welcomed as ${message.value.workerName}`);
  } else if (message.case === "assignments") {
    for (const assignment of message.value.assignments) {
      const lease = assignment.lease!;
      check(assignment.taskName === "noop", `assigned ${lease.workRequestId}`);
      const content = Buffer.from("made by a node worker\n");
      const created = await artifacts.createArtifact({
        category: "polyglot:node-worker",
        workRequestId: lease.workRequestId,
        lease,
        files: [
          {
            path: "note.txt",
            size: BigInt(content.length),
            sha256: createHash("sha256").update(content).digest("hex"),
          },
        ],
      });
      const artifactId = created.artifact!.id;
      const uploaded = await artifacts.uploadFile(
        (async function* () {
          yield { artifactId, path: "note.txt", offset: 0n, data: content, finishWrite: true };
        })(),
      );
      check(uploaded.artifactComplete, "uploaded an artifact under the lease");
      send({
        message: {
          case: "reports",
          value: {
            reports: [
              { report: { case: "started", value: { lease } } },
              {
                report: {
                  case: "completed",
                  value: { lease, outcome: WorkOutcome.SUCCESS, detailsJson: '{"node": true}' },
                },
              },
            ],
          },
        },
      });
    }
  } else if (message.case === "acks") {
    for (const ack of message.value.acks) {
      check(ack.kind === ReportKind.COMPLETED && !ack.problem, "the result was recorded");
      done = true;
      wake?.();
    }
  }
  if (done) break;
}
console.log("node worker: every step passed");
