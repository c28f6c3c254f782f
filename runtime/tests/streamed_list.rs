//! A pool's streamed list (`sendInitialEvents`) over a scripted wire: what the backbone does
//! when the server breaks or stalls the stream before its initial events end.

use leasehold_core::{Holder, Lease, LeaseRecord, ResourceVersion, SlotNames, WatchEvent};
use leasehold_runtime::{
    Answer, Backbone, Call, CreateMetadata, Delivery, Failure, ListedLease, Transport, WatchFrom,
    WatchSink, Wire, WireEvent, WireStream,
};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
struct Obj {
    name: String,
    rv: String,
}

fn obj(name: &str, rv: &str) -> Obj {
    Obj {
        name: name.into(),
        rv: rv.into(),
    }
}

/// What the server does with a streamed list.
#[derive(Clone, Copy)]
enum Streamed {
    /// 200, then an `ERROR` before the end bookmark (what kube-apiserver's cacher sends when
    /// `waitUntilWatchCacheFreshAndForceAllEvents` fails: `newErrWatcher`, e.g. "Too large
    /// resource version", 504), every time.
    ErrorsBeforeTheEnd,
    /// 200, one initial event, then nothing more (a stalled server or a half-open connection).
    Stalls,
}

struct Scripted {
    streamed: Streamed,
    calls: Mutex<Vec<String>>,
}

struct Stream {
    events: VecDeque<WireEvent<Obj>>,
    then_hang: bool,
}

impl WireStream<Obj> for Stream {
    async fn next(&mut self) -> Option<WireEvent<Obj>> {
        match self.events.pop_front() {
            Some(e) => Some(e),
            None if self.then_hang => std::future::pending().await,
            None => None,
        }
    }
}

impl Wire for Scripted {
    type Object = Obj;
    type Stream = Stream;
    const NAME: &'static str = "scripted";

    fn namespace(&self) -> &str {
        "default"
    }
    fn blank(&self, _: &CreateMetadata) -> Obj {
        obj("", "")
    }
    fn encode(&self, base: Obj, _: &str, _: Option<&ResourceVersion>, _: &LeaseRecord) -> Obj {
        base
    }
    fn uid(_: &Obj) -> Option<&str> {
        Some("uid")
    }
    fn name(o: &Obj) -> Option<&str> {
        Some(&o.name)
    }
    fn decode(o: &Obj) -> Result<Lease, String> {
        Ok(Lease {
            resource_version: ResourceVersion::new(&o.rv).map_err(|e| e.to_string())?,
            record: LeaseRecord {
                holder: Holder::None,
                ..LeaseRecord::EMPTY
            },
        })
    }
    fn decode_listed(_: &Obj) -> Result<ListedLease, String> {
        Err("unused".into())
    }
    async fn send(&self, call: Call<'_, Obj>) -> Result<Answer<Obj>, Failure> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{call:?}").chars().take(4).collect());
        match call {
            Call::List(_) => Ok(Answer::Page {
                items: vec![obj("s-0", "5")],
                continue_token: None,
                resource_version: Some("7".into()),
            }),
            _ => panic!("unexpected call"),
        }
    }
    async fn watch(&self, _: Option<&str>, from: WatchFrom<'_>) -> Result<Stream, Failure> {
        self.calls.lock().unwrap().push(format!("watch {from:?}"));
        Ok(match (from, self.streamed) {
            (WatchFrom::List, Streamed::ErrorsBeforeTheEnd) => Stream {
                events: VecDeque::from([WireEvent::Broken]),
                then_hang: false,
            },
            (WatchFrom::List, Streamed::Stalls) => Stream {
                events: VecDeque::from([WireEvent::Changed(obj("s-0", "5"))]),
                then_hang: true,
            },
            // A plain watch after a list: opens, stays quiet.
            _ => Stream {
                events: VecDeque::new(),
                then_hang: true,
            },
        })
    }
}

fn backbone(streamed: Streamed) -> Backbone<Scripted> {
    Backbone::new(
        Scripted {
            streamed,
            calls: Mutex::new(Vec::new()),
        },
        Duration::from_secs(5),
    )
}

/// Runs one opening of the pool's stream without a version (as the pool does at each reopen)
/// for at most `for_`, and returns what it delivered.
async fn open_once(t: &Backbone<Scripted>, for_: Duration) -> Vec<Delivery> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let slots = SlotNames::new("s", 2).unwrap();
    let _ = tokio::time::timeout(for_, t.watch_slots(slots, None, WatchSink::new(2, 0, tx))).await;
    let mut out = Vec::new();
    while let Ok(d) = rx.try_recv() {
        out.push(d);
    }
    out
}

fn synced(ds: &[Delivery]) -> bool {
    ds.iter().any(|d| matches!(d.event, WatchEvent::Synced(_)))
}

fn calls(t: &Backbone<Scripted>) -> Vec<String> {
    std::mem::take(&mut *t.wire().calls.lock().unwrap())
}

/// A server that accepts the streamed list but answers it with an `ERROR` before its end
/// bookmark, every time, while its LIST works: each opening falls back to a list and is
/// `Synced`, and the next opening streams again (a broken stream says nothing of the server's
/// support). Before this rule, the pool reopened its stream again and again, never `Synced`.
#[tokio::test(start_paused = true)]
async fn a_streamed_list_broken_before_its_end_falls_back_to_a_list_that_once() {
    let t = backbone(Streamed::ErrorsBeforeTheEnd);
    for _ in 0..3 {
        let ds = open_once(&t, Duration::from_secs(10)).await;
        assert!(synced(&ds), "{ds:?}");
        assert_eq!(
            calls(&t),
            ["watch List", "List", "watch After(ResourceVersion(\"7\"))"],
            "a streamed list, a list, then the watch from the list's version"
        );
        assert!(!t.lists_before_watching(), "streamed lists are still tried");
    }
}

/// A streamed list whose end bookmark never comes (a stalled server, a half-open connection)
/// is given a request timeout (5 s here), as a LIST is; then the state is listed, and a server
/// that leaves its initial events unended that long is listed from then on.
#[tokio::test(start_paused = true)]
async fn a_streamed_list_stalled_before_its_end_is_bounded_like_a_list() {
    let t = backbone(Streamed::Stalls);
    let started = tokio::time::Instant::now();
    let ds = open_once(&t, Duration::from_secs(60)).await;
    assert!(synced(&ds), "{ds:?}");
    assert_eq!(
        ds.iter().filter(|d| d.lease_slot.is_some()).count(),
        1,
        "the listed slot once, not also the streamed one: {ds:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(calls(&t)[..2], ["watch List", "List"]);
    assert!(t.lists_before_watching());
    open_once(&t, Duration::from_secs(10)).await;
    assert_eq!(calls(&t)[0], "List", "no streamed list asked for again");
}
