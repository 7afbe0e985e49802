// The peer in BENCHMARKS.md: graphile-worker 0.18 (batched mode, local queue of 500) on the
// same PostgreSQL, measured as `sluice bench` measures Sluice: bulk enqueue, drain of
// pre-inserted no-op jobs from first start to the table emptied, enqueue-to-start latency on
// an idle worker. Run by benches/peer/run, which installs graphile-worker from npm.
// Usage: node graphile.js DATABASE_URL JOBS SAMPLES
const { run, runMigrations, Logger } = require("graphile-worker");
const silent = new Logger(() => () => {});
const { Pool } = require("pg");

const [url, jobsArg = "100000", samplesArg = "200"] = process.argv.slice(2);
const JOBS = Number(jobsArg);
const SAMPLES = Number(samplesArg);

const preset = {
  worker: {
    connectionString: url,
    concurrentJobs: 24,
    maxPoolSize: 25,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
    pollInterval: 2000,
  },
};

async function main() {
  await runMigrations({ preset, logger: silent });
  const pool = new Pool({ connectionString: url });
  
  // Bulk enqueue: add_jobs in batches of 10,000, two at a time.
  let t0 = process.hrtime.bigint();
  const batch = 10000;
  const batches = [];
  for (let start = 0; start < JOBS; start += batch) batches.push(Math.min(batch, JOBS - start));
  const insert = (n) =>
    pool.query(
      `select graphile_worker.add_jobs(array(
         select json_populate_record(null::graphile_worker.job_spec,
                json_build_object('identifier', 'noop', 'payload', json_build_object('n', i)))
         from generate_series(1, $1) i))`,
      [n],
    );
  for (let i = 0; i < batches.length; i += 2) {
    await Promise.all(batches.slice(i, i + 2).map(insert));
  }
  const enqueueSecs = Number(process.hrtime.bigint() - t0) / 1e9;

  // Drain.
  let done = 0;
  let first = null;
  let last = null;
  let finished;
  const allDone = new Promise((r) => (finished = r));
  const runner = await run({
    preset,
    logger: silent,
    taskList: {
      noop: async () => {
        if (first === null) first = process.hrtime.bigint();
      },
    },
  });
  runner.events.on("job:complete", () => {
    done += 1;
    if (done === JOBS) {
      last = process.hrtime.bigint();
      finished();
    }
  });
  await allDone;
  // Completions are written in batches; wait until the table is empty.
  for (;;) {
    const { rows } = await pool.query("select count(*)::int as n from graphile_worker._private_jobs");
    if (rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 1));
  }
  last = process.hrtime.bigint();
  const drainSecs = Number(last - first) / 1e9;
  await runner.stop();

  // Latency on an idle worker: enqueue one job, wait for it to start, repeat.
  const latencies = [];
  let started;
  const runner2 = await run({
    preset,
    logger: silent,
    taskList: {
      noop: async () => {
        started(process.hrtime.bigint());
      },
    },
  });
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < SAMPLES; i++) {
    const s = new Promise((r) => (started = r));
    const t = process.hrtime.bigint();
    await pool.query("select graphile_worker.add_job('noop', '{}'::json)");
    const end = await s;
    latencies.push(Number(end - t) / 1e6);
  }
  await runner2.stop();
  await pool.end();
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  console.log(
    JSON.stringify({
      peer: "graphile-worker 0.18.0",
      jobs: JOBS,
      enqueue_per_sec: Math.round(JOBS / enqueueSecs),
      drain_per_sec: Math.round(JOBS / drainSecs),
      latency_ms: { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: latencies[latencies.length - 1] },
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
