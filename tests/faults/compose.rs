//! Composition under `kill -9`, on both stores: a parent's children exist if and only if its
//! attempt completed, once however often it ran; batch callbacks
//! fire exactly once with three nodes racing to end a batch's last jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use serde_json::Value;
use sluice_test_artifacts as guests;

use crate::cluster::{History, Node, outcomes_by_job, own_the_machine, scale, until};
use crate::support::binary::Sluice;
use crate::support::temp_dir;

const LEASE: Duration = Duration::from_secs(2);

/// When the doomed node dies, relative to its parents' completions.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Killed from outside while parents sleep with their children enqueued in memory.
    MidAttempt,
    /// Kills itself at an engine crash point (`SLUICE_CRASH_AT`), its N-th passage: with
    /// completions (and their children) about to be written, or just written.
    At(&'static str, u32),
}

macro_rules! compose_scenarios {
    ($($name:ident: $moment:expr,)*) => {
        mod sqlite {
            use super::Moment;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let _machine = super::own_the_machine().await;
                    super::parents_die(super::Sluice::sqlite().await, 1, $moment).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn batch_callbacks_fire_once_across_three_nodes() {
                let _machine = super::own_the_machine().await;
                super::batches_on_three_nodes(super::Sluice::sqlite().await).await;
            }
        }
        mod postgres {
            use super::Moment;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let _machine = super::own_the_machine().await;
                    super::parents_die(super::Sluice::postgres().await, 2, $moment).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn batch_callbacks_fire_once_across_three_nodes() {
                let _machine = super::own_the_machine().await;
                super::batches_on_three_nodes(super::Sluice::postgres().await).await;
            }
        }
    };
}

compose_scenarios! {
    children_survive_only_a_completed_parent_killed_mid_attempt: Moment::MidAttempt,
    children_survive_only_a_completed_parent_killed_before_writing: Moment::At("flushing", 3),
    children_survive_only_a_completed_parent_killed_after_writing: Moment::At("flushed", 3),
}

fn node_args() -> Vec<String> {
    vec![
        "--queue".into(),
        "default=16".into(),
        "--lease".into(),
        format!("{}ms", LEASE.as_millis()),
        "--maintenance-interval".into(),
        "100ms".into(),
    ]
}

/// Enqueues `composer.FUNCTION` once per line of args, in one bulk insert.
fn enqueue_lines(sluice: &Sluice, function: &str, lines: &[String]) {
    let file = temp_dir("compose-batch").join("args.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = sluice.json(&[
        "enqueue",
        "composer",
        function,
        "--batch",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out["count"], lines.len() as u64);
}

/// Parents of two kinds, one node killed at `moment`, survivors finish: every parent
/// completed, and each has exactly the children its one completed attempt enqueued (squares,
/// and for a fan-out the sum over them), none from the attempts that died.
async fn parents_die(sluice: Sluice, survivors: usize, moment: Moment) {
    sluice.ok(&["upload", guests::COMPOSER]);
    const N: u64 = 4;
    let (function, parents) = match moment {
        // Long enough asleep that the kill finds parents with children in memory.
        Moment::MidAttempt => ("enqueue_then_sleep", scale(120, 1_000)),
        Moment::At(..) => ("fan_out", scale(300, 3_000)),
    };
    let args = match moment {
        Moment::MidAttempt => format!(r#"{{"n":{N},"ms":150}}"#),
        Moment::At(..) => format!(r#"{{"n":{N}}}"#),
    };
    enqueue_lines(&sluice, function, &vec![args; parents]);
    let history = History::of(&sluice);

    let args = node_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let crash_spec;
    let env: Vec<(&str, &str)> = match moment {
        Moment::MidAttempt => vec![],
        Moment::At(point, n) => {
            crash_spec = format!("{point}:{n}");
            vec![("SLUICE_CRASH_AT", crash_spec.as_str())]
        }
    };
    let mut doomed = Node::start(&sluice, "doomed", &args, &env);
    match moment {
        Moment::MidAttempt => {
            until(
                Duration::from_secs(30),
                "the doomed node to complete some parents",
                || async { history.attempt_count().await >= 20 },
            )
            .await;
            doomed.kill();
        }
        Moment::At(..) => {
            let status = doomed.wait(Duration::from_secs(30));
            assert_eq!(
                status.signal(),
                Some(9),
                "the crash point did not fire\n{}",
                doomed.log()
            );
        }
    }
    until(
        Duration::from_secs(30),
        "the killed node's sessions to end",
        || async { history.other_sessions().await == 0 },
    )
    .await;
    let held = history.leased_by("doomed").await;

    let mut survivor_args = args.clone();
    survivor_args.push("--exit-when-idle");
    let mut nodes: Vec<Node> = (0..survivors)
        .map(|i| Node::start(&sluice, &format!("survivor-{i}"), &survivor_args, &[]))
        .collect();
    for node in &mut nodes {
        node.finishes(Duration::from_secs(90));
    }

    let family = family(&sluice).await;
    let outcomes = outcomes_by_job(&history.attempts().await);
    let parent_ids: Vec<i64> = family
        .iter()
        .filter(|job| job.function == function)
        .map(|job| job.id)
        .collect();
    assert_eq!(parent_ids.len(), parents);
    let mut children: BTreeMap<i64, Vec<&FamilyRow>> = BTreeMap::new();
    for job in &family {
        assert_eq!(
            job.state, "completed",
            "job {} ({}) did not complete",
            job.id, job.function
        );
        if let Some(parent) = job.parent_id {
            children.entry(parent).or_default().push(job);
        }
    }
    let mut parents_rerun = 0;
    for parent in &parent_ids {
        match outcomes[parent].as_slice() {
            [one] if one == "completed" => {}
            [first, second] if first == "lease_expired" && second == "completed" => {
                parents_rerun += 1;
            }
            other => panic!("parent {parent} has attempts {other:?}"),
        }
        let mine = children.remove(parent).unwrap_or_default();
        let squares: BTreeSet<u64> = mine
            .iter()
            .filter(|job| job.function == "square")
            .map(|job| job.output.as_u64().unwrap())
            .collect();
        let expected: BTreeSet<u64> = (0..N).map(|x| x * x).collect();
        match function {
            "fan_out" => {
                assert_eq!(mine.len() as u64, N + 1, "parent {parent}: {mine:?}");
                assert_eq!(squares, expected, "parent {parent}");
                let sums: Vec<&&FamilyRow> =
                    mine.iter().filter(|job| job.function == "sum").collect();
                assert_eq!(sums.len(), 1, "parent {parent}");
                assert_eq!(sums[0].output["sum"], expected.iter().sum::<u64>());
                assert_eq!(sums[0].output["count"], N);
            }
            _ => {
                assert_eq!(mine.len() as u64, N, "parent {parent}: {mine:?}");
                assert_eq!(squares, expected, "parent {parent}");
            }
        }
    }
    assert!(children.is_empty(), "children of no parent: {children:?}");
    let rerun_in_held = held.iter().filter(|id| parent_ids.contains(id)).count();
    if !matches!(moment, Moment::At("flushed", _)) {
        assert!(
            rerun_in_held > 0,
            "the node died holding no parent, so nothing was tested"
        );
    }
    println!(
        "{moment:?}: {parents} parents of {function}, {parents_rerun} ran again after the kill, \
         each with its {N} children once"
    );
}

/// Three nodes, one killed mid-run, run batches whose last jobs end on different nodes at
/// once: each batch gets its `finished` callback once, `success` once if nothing failed, and
/// `discard` once if anything did, with the counts it ended with.
async fn batches_on_three_nodes(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    let batches = scale(60, 600);
    const SIZE: u64 = 20;
    // Half the batches have two failing jobs each.
    let lines: Vec<String> = (0..batches)
        .map(|i| {
            format!(
                r#"{{"n":{SIZE},"fail_below":{}}}"#,
                if i % 2 == 0 { 0 } else { 2 }
            )
        })
        .collect();
    enqueue_lines(&sluice, "open_batch", &lines);
    let history = History::of(&sluice);

    let args = node_args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push("--exit-when-idle");
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&sluice, &format!("node-{i}"), &args, &[]))
        .collect();
    until(
        Duration::from_secs(60),
        "the nodes to run some batched jobs",
        || async { history.attempt_count().await >= (batches * 5) as i64 },
    )
    .await;
    nodes[0].kill();
    for node in &mut nodes[1..] {
        node.finishes(Duration::from_secs(120));
    }

    let family = family(&sluice).await;
    let mut callbacks: BTreeMap<(i64, String), Vec<&FamilyRow>> = BTreeMap::new();
    for job in family.iter().filter(|job| job.function == "batch_done") {
        assert_eq!(job.state, "completed");
        let batch = job.output["batch"].as_i64().unwrap();
        let kind = job.output["context"].as_str().unwrap().to_string();
        callbacks.entry((batch, kind)).or_default().push(job);
    }
    let batch_ids: BTreeSet<i64> = family.iter().filter_map(|job| job.batch_id).collect();
    assert_eq!(batch_ids.len(), batches);
    let mut failing = 0;
    for batch in &batch_ids {
        let members: Vec<&FamilyRow> = family
            .iter()
            .filter(|job| job.batch_id == Some(*batch))
            .collect();
        assert_eq!(members.len() as u64, SIZE);
        let discarded = members
            .iter()
            .filter(|job| job.state == "discarded")
            .count();
        let once = |kind: &str| {
            callbacks
                .get(&(*batch, kind.to_string()))
                .map_or(0, Vec::len)
        };
        assert_eq!(once("finished"), 1, "batch {batch}: finished callbacks");
        let finished = &callbacks[&(*batch, "finished".to_string())][0].output["counts"];
        assert_eq!(finished["total"], SIZE);
        assert_eq!(finished["discarded"], discarded as u64);
        assert_eq!(finished["completed"], SIZE - discarded as u64);
        if discarded == 0 {
            assert_eq!(once("success"), 1, "batch {batch}: success callbacks");
            assert_eq!(once("discard"), 0, "batch {batch}: discard callbacks");
        } else {
            failing += 1;
            assert_eq!(once("success"), 0, "batch {batch}: success callbacks");
            assert_eq!(once("discard"), 1, "batch {batch}: discard callbacks");
        }
    }
    assert_eq!(failing, batches / 2);
    println!(
        "{batches} batches of {SIZE} on 3 nodes (one killed): each callback once, {failing} with discards"
    );
}

/// One job, with what composition says of it.
#[derive(Debug)]
struct FamilyRow {
    id: i64,
    function: String,
    state: String,
    parent_id: Option<i64>,
    batch_id: Option<i64>,
    /// The JSON output, `null` for none.
    output: Value,
}

async fn family(sluice: &Sluice) -> Vec<FamilyRow> {
    use sqlx::{Connection, Row};
    const QUERY: &str =
        "SELECT id, function, state, parent_id, batch_id, output FROM sluice_jobs ORDER BY id";
    let parse = |bytes: Option<Vec<u8>>| {
        bytes.map_or(Value::Null, |bytes| serde_json::from_slice(&bytes).unwrap())
    };
    macro_rules! rows {
        ($conn:expr) => {
            sqlx::query(QUERY)
                .fetch_all(&mut $conn)
                .await
                .unwrap()
                .iter()
                .map(|row| FamilyRow {
                    id: row.get(0),
                    function: row.get(1),
                    state: row.get(2),
                    parent_id: row.get(3),
                    batch_id: row.get(4),
                    output: parse(row.get(5)),
                })
                .collect()
        };
    }
    if sluice.database_url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(&sluice.database_url)
            .await
            .unwrap();
        rows!(conn)
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&sluice.database_url)
            .await
            .unwrap();
        rows!(conn)
    }
}
