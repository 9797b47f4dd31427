//! Stage 3: one read per vehicle pass. Reads of the same lane that follow each other within
//! `pass_gap` and look alike, or sit where the plate was a moment ago (an approaching car's first,
//! far-away reads disagree with each other), form a pass. Characters are voted with their confidences over
//! the clear reads (weak guesses vote only when there is nothing else); the pass is decided early once the
//! vote is confident or its latest clear reads agree, or when the vehicle leaves. A decision the gate did
//! not open for may be revised once by agreeing clear reads at the plate's place (a character dropped at a
//! distance, read when the car comes closer). A car standing in front of the camera (or flickering in and
//! out of view within `same_vehicle`) never makes a second pass.
//!
//! [`Tracker`] is a pure state machine (unit-tested here); [`run_tracker`] drives it from a channel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use opencv::core::Rect;
use tokio::sync::mpsc;

use crate::clock::SharedClock;
use crate::config::TrackConfig;
use crate::recognize::{CharRead, PlateCandidate};

/// One plate read in one frame, on its way to the tracker.
#[derive(Debug, Clone)]
pub struct PlateRead {
    pub lane: Arc<str>,
    pub at: DateTime<Utc>,
    pub frame_seq: u64,
    pub candidate: PlateCandidate,
    /// JPEG of the plate region (kept for the best read of a pass).
    pub crop_jpeg: Vec<u8>,
}

/// The voted read of a pass, handed to the access decision.
#[derive(Debug, Clone)]
pub struct VotedRead {
    pub lane: Arc<str>,
    pub text: String,
    pub chars: Vec<CharRead>,
    /// Weakest voted character.
    pub confidence: f32,
    /// Reads that agreed on the text's length.
    pub reads: usize,
    pub first_seen: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    /// Ranked alternatives of the best single read (top-N).
    pub alternatives: Vec<(String, f32)>,
    pub best_crop: Vec<u8>,
    pub best_bbox: Rect,
    /// Whether the decision came before the vehicle left.
    pub early: bool,
}

struct Pass {
    reads: Vec<PlateRead>,
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    decided: Option<String>,
    /// Reads at the plate's place after a decision the gate did not open for (a misread can be revised once).
    after: Vec<PlateRead>,
    revised: bool,
    /// Where the plate was last seen (frame pixels).
    last_bbox: Rect,
}

/// Plates a lane recently opened for (written by the decision, read by the tracker): only a vehicle the
/// gate opened for is suppressed as "same vehicle"; one that was denied is decided again when it returns.
#[derive(Debug, Clone, Default)]
pub struct RecentOpens(Arc<Mutex<VecDeque<SeenPlate>>>);

/// A plate and when it was last seen.
type SeenPlate = (String, DateTime<Utc>);

impl RecentOpens {
    pub fn record(&self, text: &str, at: DateTime<Utc>) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|(t, _)| t != text);
        v.push_back((text.to_string(), at));
        while v.len() > 64 {
            v.pop_front();
        }
    }

    fn touch(&self, text: &str, at: DateTime<Utc>) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = v.iter_mut().find(|(t, _)| t == text) {
            e.1 = e.1.max(at);
        }
    }

    fn seen_since(&self, text: &str, since: DateTime<Utc>) -> bool {
        let v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.iter().any(|(t, seen)| t == text && *seen >= since)
    }
}

/// The per-lane pass state machine.
pub struct Tracker {
    cfg: TrackConfig,
    pass: Option<Pass>,
    /// Plates this lane recently opened for, and when they were last seen.
    opens: RecentOpens,
    /// The lane's loop detector, when it has one: `Some(true)` while a vehicle stands on it.
    present: Option<bool>,
    /// The plate decided for the vehicle that just left the loop, and when it left: its last reads as it
    /// drives off belong to no new pass.
    left: Option<(String, DateTime<Utc>)>,
}

/// What the tracker wants done.
#[derive(Debug)]
pub enum TrackEvent {
    /// A pass is ready for its access decision.
    Decide(Box<VotedRead>),
    /// A pass of a vehicle that was just decided (still standing / flickering): no new decision.
    SameVehicle { lane: Arc<str>, text: String },
}

/// Reads kept per pass before a decision (the weakest is dropped beyond this).
const MAX_READS: usize = 64;

fn chrono_of(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Tracker {
    pub fn new(cfg: TrackConfig, opens: RecentOpens) -> Self {
        Self {
            cfg,
            pass: None,
            opens,
            present: None,
            left: None,
        }
    }

    /// The lane's loop detector changed. While a vehicle is on the loop its pass stays open however long
    /// the camera loses sight of it; when the loop is released the vehicle has left and its pass closes
    /// (decided now if it was not yet). The tracker no longer guesses from a gap in the reads.
    pub fn on_presence(&mut self, present: bool, at: DateTime<Utc>) -> Vec<TrackEvent> {
        self.present = Some(present);
        if present {
            self.left = None;
            return Vec::new();
        }
        let decided = self.pass.as_ref().and_then(|p| p.decided.clone());
        let out = self.close();
        // The vote of a pass decided just now on closing counts too.
        let decided = decided.or_else(|| {
            out.iter().find_map(|e| match e {
                TrackEvent::Decide(v) => Some(v.text.clone()),
                TrackEvent::SameVehicle { .. } => None,
            })
        });
        self.left = decided.map(|t| (t, at));
        out
    }

    /// Feeds one read; may decide the current pass (early) or close it (a different vehicle).
    pub fn on_read(&mut self, read: PlateRead) -> Vec<TrackEvent> {
        let mut out = Vec::new();
        if let Some((text, at)) = &self.left {
            if read.at - *at <= chrono_of(self.cfg.pass_gap) && same_plate(text, &read.candidate.text) {
                return vec![TrackEvent::SameVehicle {
                    lane: read.lane.clone(),
                    text: read.candidate.text,
                }];
            }
        }
        let gap = chrono_of(self.cfg.pass_gap);
        let joins = match &self.pass {
            // A vehicle on the loop is the same vehicle however long the camera lost sight of it.
            Some(p) if read.at - p.last_at <= gap || self.present == Some(true) => match &p.decided {
                // After the decision only the same plate (up to one OCR slip, or a part of it cut off by
                // a clipped box or an occlusion) in the same place belongs to this vehicle: a tailgater
                // with a similar plate gets its own pass.
                // A vehicle the gate did not open for still stands where its plate was: its reads there
                // may revise a misread.
                Some(t) => {
                    *t == read.candidate.text
                        || ((same_plate(t, &read.candidate.text) || part_of(t, &read.candidate.text))
                            && crate::recognize::iou(p.last_bbox, read.candidate.bbox) > 0.3)
                        || (!p.revised
                            && follows(p.last_bbox, read.candidate.bbox)
                            && !self.opens.seen_since(t, p.first_at))
                }
                // Before it: a read like the vote, or one where the plate just was (an approaching car's
                // first, far-away reads disagree with each other).
                None => similar(&vote(&p.reads).0, &read.candidate.text) || follows(p.last_bbox, read.candidate.bbox),
            },
            _ => false,
        };
        if !joins {
            out.extend(self.close());
            self.pass = Some(Pass {
                first_at: read.at,
                last_at: read.at,
                reads: Vec::new(),
                decided: None,
                after: Vec::new(),
                revised: false,
                last_bbox: read.candidate.bbox,
            });
        }
        if let Some(p) = self.pass.as_mut() {
            p.last_at = p.last_at.max(read.at);
            p.last_bbox = read.candidate.bbox;
            if p.decided.is_none() {
                if p.reads.len() >= MAX_READS {
                    // keep the pass bounded: drop the weakest read
                    if let Some((i, _)) = p
                        .reads
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.candidate.confidence.total_cmp(&b.1.candidate.confidence))
                    {
                        p.reads.remove(i);
                    }
                }
                p.reads.push(read);
            } else if !p.revised {
                if p.after.len() >= 16 {
                    p.after.remove(0);
                }
                p.after.push(read);
            }
        }
        out.extend(self.maybe_decide(false));
        out.extend(self.maybe_revise());
        out
    }

    /// A decision the gate did not open for, followed at the plate's place by `min_reads` agreeing clear
    /// reads of another plate (a character dropped at a distance, a look-alike read closer): decided once
    /// more with those reads, by the same standard as an early decision.
    fn maybe_revise(&mut self) -> Vec<TrackEvent> {
        let Some(p) = self.pass.as_mut() else { return Vec::new() };
        let Some(decided) = p.decided.as_deref() else {
            return Vec::new();
        };
        if p.revised || self.opens.seen_since(decided, p.first_at) {
            return Vec::new();
        }
        let Some(latest) = latest_agreeing(&p.after, self.cfg.min_reads, self.cfg.early_confidence)
            .or_else(|| dominant(&p.after, self.cfg.min_reads, self.cfg.early_confidence))
        else {
            return Vec::new();
        };
        // a box clipping the plate's end reads less of it: never revise to a shorter text
        if latest[0].candidate.text == decided || latest[0].candidate.text.len() < decided.len() {
            return Vec::new();
        }
        let (text, chars, agreeing) = vote(&latest);
        p.revised = true;
        p.decided = Some(text.clone());
        // the revised plate was just opened for (the same vehicle, back within the window): no second opening
        if self
            .opens
            .seen_since(&text, p.first_at - chrono_of(self.cfg.same_vehicle))
        {
            return vec![TrackEvent::SameVehicle {
                lane: latest[0].lane.clone(),
                text,
            }];
        }
        let best = latest
            .iter()
            .max_by(|a, b| a.candidate.confidence.total_cmp(&b.candidate.confidence))
            .map(|r| (r.crop_jpeg.clone(), r.candidate.bbox, r.candidate.alternatives.clone()));
        let (best_crop, best_bbox, alternatives) = best.unwrap_or_default();
        vec![TrackEvent::Decide(Box::new(VotedRead {
            lane: latest[0].lane.clone(),
            confidence: chars.iter().map(|c| c.conf).fold(1.0f32, f32::min),
            text,
            chars,
            reads: agreeing,
            first_seen: p.first_at,
            decided_at: p.last_at,
            alternatives,
            best_crop,
            best_bbox,
            early: true,
        }))]
    }

    /// Time passes with no read: closes the pass once the vehicle has been gone for `pass_gap`.
    pub fn on_idle(&mut self, now: DateTime<Utc>) -> Vec<TrackEvent> {
        if self.present == Some(true) {
            // The loop says the vehicle is still there.
            return Vec::new();
        }
        match &self.pass {
            Some(p) if now - p.last_at > chrono_of(self.cfg.pass_gap) => self.close(),
            _ => Vec::new(),
        }
    }

    /// The lane is stopping: close what is open.
    pub fn finish(&mut self) -> Vec<TrackEvent> {
        self.close()
    }

    fn close(&mut self) -> Vec<TrackEvent> {
        let out = self.maybe_decide(true);
        if let Some(p) = self.pass.take() {
            if let Some(text) = p.decided {
                // a vehicle we opened for is "recent" from when it was last seen
                self.opens.touch(&text, p.last_at);
            }
        }
        out
    }

    fn maybe_decide(&mut self, closing: bool) -> Vec<TrackEvent> {
        let Some(p) = self.pass.as_mut() else { return Vec::new() };
        if p.decided.is_some() || p.reads.is_empty() {
            return Vec::new();
        }
        let (mut text, mut chars, mut agreeing) = vote(&p.reads);
        let mut confidence = chars.iter().map(|c| c.conf).fold(1.0f32, f32::min);
        let dwelled = p.last_at - p.first_at >= chrono_of(self.cfg.decide_after);
        let early = agreeing >= self.cfg.min_reads && (confidence >= self.cfg.early_confidence || dwelled);
        if !early && !closing {
            // The car comes closer and its reads get better: the latest `min_reads` clear reads agreeing,
            // one of them confident, decide even when the first, far-away reads said otherwise.
            let Some(latest) = latest_agreeing(&p.reads, self.cfg.min_reads, self.cfg.early_confidence)
                .or_else(|| dominant(&p.reads, self.cfg.min_reads, self.cfg.early_confidence))
            else {
                return Vec::new();
            };
            (text, chars, agreeing) = vote(&latest);
            confidence = chars.iter().map(|c| c.conf).fold(1.0f32, f32::min);
        }
        p.decided = Some(text.clone());
        let window = chrono_of(self.cfg.same_vehicle);
        let lane = p.reads[0].lane.clone();
        if self.opens.seen_since(&text, p.first_at - window) {
            return vec![TrackEvent::SameVehicle { lane, text }];
        }
        let best = p
            .reads
            .iter()
            .filter(|r| r.candidate.text == text)
            .max_by(|a, b| a.candidate.confidence.total_cmp(&b.candidate.confidence))
            .or_else(|| {
                p.reads
                    .iter()
                    .max_by(|a, b| a.candidate.confidence.total_cmp(&b.candidate.confidence))
            });
        let (best_crop, best_bbox, alternatives) = match best {
            Some(r) => (r.crop_jpeg.clone(), r.candidate.bbox, r.candidate.alternatives.clone()),
            None => (Vec::new(), Rect::default(), Vec::new()),
        };
        let decided_at = p.last_at;
        vec![TrackEvent::Decide(Box::new(VotedRead {
            lane,
            text,
            chars,
            confidence,
            reads: agreeing,
            first_seen: p.first_at,
            decided_at,
            alternatives,
            best_crop,
            best_bbox,
            early: !closing,
        }))]
    }
}

/// Below this a read is a far-away or blurred guess: it may join the pass of the plate at its place, and
/// it does not vote while the pass has clearer reads.
const WEAK_READ: f32 = 0.5;

fn strong(r: &PlateRead) -> bool {
    r.candidate.confidence >= WEAK_READ
}

/// The last `n` clear reads when they read the same text and one of them is at least `confident`, or the
/// last `n + 1` clear reads when they all read the same text.
fn latest_agreeing(reads: &[PlateRead], n: usize, confident: f32) -> Option<Vec<PlateRead>> {
    let n = n.max(1);
    let latest: Vec<&PlateRead> = reads.iter().rev().filter(|r| strong(r)).take(n + 1).collect();
    let first = latest.first()?;
    let same = |k: usize| latest.len() >= k && latest[..k].iter().all(|r| r.candidate.text == first.candidate.text);
    let k = if same(n + 1) {
        n + 1
    } else if same(n) && latest[..n].iter().any(|r| r.candidate.confidence >= confident) {
        n
    } else {
        return None;
    };
    Some(latest[..k].iter().rev().map(|r| (*r).clone()).collect())
}

/// The clear reads of the text that carries most of the clear reads' confidence (more than all the other
/// texts together), when there are at least `n` of them and one is at least `confident`: a plate read
/// right most of the time among occasional slips (HK5R9C, RK5R9C, HK5R9C, HX5R9C, HK5R9C).
fn dominant(reads: &[PlateRead], n: usize, confident: f32) -> Option<Vec<PlateRead>> {
    let clear: Vec<&PlateRead> = reads.iter().filter(|r| strong(r)).collect();
    let total: f32 = clear.iter().map(|r| r.candidate.confidence).sum();
    let mut by_text: BTreeMap<&str, f32> = BTreeMap::new();
    for r in &clear {
        *by_text.entry(r.candidate.text.as_str()).or_default() += r.candidate.confidence;
    }
    let (text, weight) = by_text.into_iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let same: Vec<PlateRead> = clear
        .iter()
        .filter(|r| r.candidate.text == text)
        .map(|r| (*r).clone())
        .collect();
    let ok =
        same.len() >= n.max(1) && same.iter().any(|r| r.candidate.confidence >= confident) && weight > total - weight;
    ok.then_some(same)
}

/// `next` is where a plate seen at `last` would be a moment later: boxes of a similar size (within 2x)
/// whose centres are at most a plate width apart.
fn follows(last: Rect, next: Rect) -> bool {
    let (wl, wn) = (last.width.max(1) as f32, next.width.max(1) as f32);
    let ratio = wl.max(wn) / wl.min(wn);
    let (dx, dy) = (
        (last.x as f32 + wl / 2.0) - (next.x as f32 + wn / 2.0),
        (last.y + last.height / 2 - next.y - next.height / 2) as f32,
    );
    ratio <= 2.0 && (dx * dx + dy * dy).sqrt() <= wl.max(wn)
}

/// The same plate, up to one OCR slip or any confusable characters.
fn same_plate(a: &str, b: &str) -> bool {
    levenshtein(a, b) <= 1
        || (crate::plate::pack_canonical(a).is_some()
            && crate::plate::pack_canonical(a) == crate::plate::pack_canonical(b))
}

/// `part` is a run of at least 4 characters of `plate`: what a box that clips the plate's end reads.
fn part_of(plate: &str, part: &str) -> bool {
    part.len() >= 4 && plate.contains(part)
}

/// Two reads belong to the same vehicle when they differ in at most a third of their characters.
fn similar(a: &str, b: &str) -> bool {
    let d = levenshtein(a, b);
    d <= (a.len().max(b.len()) / 3).max(1)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Character-level vote over the strong reads (all reads when none is): the length with the most confidence wins; each position takes the character with
/// the most summed confidence; a voted character's confidence is its support divided by the reads of that length.
fn vote(reads: &[PlateRead]) -> (String, Vec<CharRead>, usize) {
    let mut by_len: BTreeMap<usize, (f32, Vec<&PlateRead>)> = BTreeMap::new();
    // weak reads vote only when there is nothing better
    let any_strong = reads.iter().any(strong);
    for r in reads.iter().filter(|r| !any_strong || strong(r)) {
        let e = by_len.entry(r.candidate.chars.len()).or_default();
        e.0 += r.candidate.confidence.max(0.01);
        e.1.push(r);
    }
    let Some((len, (_, group))) = by_len.into_iter().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)) else {
        return (String::new(), Vec::new(), 0);
    };
    let n = group.len() as f32;
    let mut chars = Vec::with_capacity(len);
    for pos in 0..len {
        let mut tally: BTreeMap<char, f32> = BTreeMap::new();
        for r in &group {
            if let Some(c) = r.candidate.chars.get(pos) {
                *tally.entry(c.ch).or_default() += c.conf;
            }
        }
        let mut ranked: Vec<(char, f32)> = tally.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(&(ch, w)) = ranked.first() {
            let alt = ranked.get(1).map(|&(a, aw)| (a, aw / n));
            chars.push(CharRead {
                ch,
                conf: (w / n).min(1.0),
                alt,
            });
        }
    }
    let text = chars.iter().map(|c| c.ch).collect();
    (text, chars, group.len())
}

/// Drives a [`Tracker`] for one lane: reads in, voted reads out. Closes passes on idle using the clock
/// (none for a replayed video, whose time is its own). Ends (closing the open pass) when the recognizer
/// closes its channel.
pub async fn run_tracker(
    cfg: TrackConfig,
    clock: Option<SharedClock>,
    mut reads: mpsc::Receiver<PlateRead>,
    voted: mpsc::Sender<VotedRead>,
    opens: RecentOpens,
    mut presence: Option<mpsc::Receiver<crate::inputs::InputEvent>>,
) {
    let mut tracker = Tracker::new(cfg.clone(), opens);
    let tick = (cfg.pass_gap / 4).max(std::time::Duration::from_millis(25));
    loop {
        let events = tokio::select! {
            r = reads.recv() => match r {
                Some(read) => tracker.on_read(read),
                None => break,
            },
            p = async { presence.as_mut()?.recv().await }, if presence.is_some() => match p {
                Some(e) => tracker.on_presence(e.active, e.at),
                None => {
                    presence = None;
                    Vec::new()
                }
            },
            _ = tokio::time::sleep(tick), if clock.is_some() => {
                clock.as_ref().map(|c| tracker.on_idle(c.now())).unwrap_or_default()
            }
        };
        forward(events, &voted).await;
    }
    forward(tracker.finish(), &voted).await;
}

async fn forward(events: Vec<TrackEvent>, voted: &mpsc::Sender<VotedRead>) {
    for e in events {
        match e {
            TrackEvent::Decide(v) => {
                if voted.send(*v).await.is_err() {
                    tracing::warn!("decision stage is gone; dropping a voted read");
                }
            }
            TrackEvent::SameVehicle { lane, text } => {
                tracing::debug!(lane = %lane, plate = %crate::plate::redact(&text), "same vehicle still present; no new pass");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognize::FakeReader;
    use std::time::Duration;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).expect("time")
    }

    fn read(text: &str, conf: f32, at_ms: i64) -> PlateRead {
        PlateRead {
            lane: "entry".into(),
            at: t(at_ms),
            frame_seq: 0,
            candidate: FakeReader::candidate(text, conf),
            crop_jpeg: vec![1],
        }
    }

    fn cfg() -> TrackConfig {
        TrackConfig {
            pass_gap: Duration::from_millis(1000),
            min_reads: 2,
            early_confidence: 0.9,
            same_vehicle: Duration::from_secs(10),
            decide_after: Duration::from_millis(2500),
        }
    }

    impl Tracker {
        fn new_for_test(cfg: TrackConfig) -> Self {
            Tracker::new(cfg, RecentOpens::default())
        }
    }

    fn decided(events: &[TrackEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| {
                if let TrackEvent::Decide(v) = e {
                    Some(v.text.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn decides_early_once_two_confident_reads_agree_and_only_once() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        assert!(decided(&tr.on_read(read("ABC123", 0.95, 0))).is_empty());
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.97, 100))), vec!["ABC123"]);
        assert!(
            decided(&tr.on_read(read("ABC123", 0.99, 200))).is_empty(),
            "standing car: no second decision"
        );
        assert!(decided(&tr.on_idle(t(2000))).is_empty());
    }

    /// Issue 23: a pass bounded by the loop decides once. A denied car stands on the loop while the camera
    /// loses it for 5 s (without a loop: a second pass and a second decision); the loop's release closes
    /// the pass, its last reads driving off start nothing; the next car on the loop gets its own pass.
    #[test]
    fn a_pass_bounded_by_the_loop_decides_once() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        assert!(tr.on_presence(true, t(0)).is_empty());
        tr.on_read(read("ABC123", 0.95, 0));
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.97, 100))), vec!["ABC123"]);
        assert!(tr.on_idle(t(3000)).is_empty(), "on the loop: the pass stays open");
        assert!(
            decided(&tr.on_read(read("ABC123", 0.96, 5100))).is_empty(),
            "same vehicle"
        );
        assert!(decided(&tr.on_read(read("ABC123", 0.96, 5200))).is_empty());
        assert!(decided(&tr.on_presence(false, t(6000))).is_empty(), "already decided");
        let driving_off = tr.on_read(read("ABC123", 0.9, 6300));
        assert!(decided(&driving_off).is_empty(), "reads as it leaves start no pass");
        assert!(decided(&tr.on_idle(t(9000))).is_empty());
        // The next car.
        tr.on_presence(true, t(20_000));
        tr.on_read(read("XYZ789", 0.95, 20_000));
        assert_eq!(decided(&tr.on_read(read("XYZ789", 0.95, 20_100))), vec!["XYZ789"]);

        // The same stand without a loop decides twice: what the loop fixes.
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(read("ABC123", 0.95, 0));
        let mut n = decided(&tr.on_read(read("ABC123", 0.97, 100)));
        n.extend(decided(&tr.on_idle(t(3000))));
        tr.on_read(read("ABC123", 0.96, 5100));
        n.extend(decided(&tr.on_read(read("ABC123", 0.96, 5200))));
        assert_eq!(n.len(), 2, "{n:?}");
    }

    #[test]
    fn a_vehicle_leaving_the_loop_undecided_is_decided_then() {
        let mut tr = Tracker::new_for_test(TrackConfig {
            early_confidence: 1.1,
            ..cfg()
        });
        tr.on_presence(true, t(0));
        tr.on_read(read("ABC123", 0.8, 0));
        tr.on_read(read("ABC123", 0.8, 100));
        assert!(
            tr.on_idle(t(5000)).is_empty(),
            "no gap closes it while the loop is occupied"
        );
        assert_eq!(decided(&tr.on_presence(false, t(5000))), vec!["ABC123"]);
    }

    #[test]
    fn votes_characters_across_frames() {
        let mut tr = Tracker::new_for_test(TrackConfig {
            early_confidence: 1.1,
            ..cfg()
        });
        tr.on_read(read("A8C123", 0.6, 0));
        tr.on_read(read("ABC123", 0.8, 100));
        tr.on_read(read("ABC123", 0.7, 200));
        let ev = tr.on_idle(t(1500));
        assert_eq!(decided(&ev), vec!["ABC123"]);
        if let Some(TrackEvent::Decide(v)) = ev.first() {
            assert_eq!(v.reads, 3);
            assert!(!v.early);
            assert!(v.chars[1].conf < 0.6, "the disputed character carries less confidence");
        }
    }

    #[test]
    fn a_different_plate_starts_a_new_pass() {
        let mut tr = Tracker::new_for_test(TrackConfig {
            early_confidence: 1.1,
            ..cfg()
        });
        tr.on_read(read("ABC123", 0.8, 0));
        let mut other = read("XYZ789", 0.8, 100);
        other.candidate.bbox = Rect::new(400, 300, 100, 30); // not where ABC123 was a moment ago
        let ev = tr.on_read(other);
        assert_eq!(decided(&ev), vec!["ABC123"]);
        assert_eq!(decided(&tr.finish()), vec!["XYZ789"]);
    }

    fn at(mut r: PlateRead, x: i32, width: i32) -> PlateRead {
        r.candidate.bbox = Rect::new(x, 200, width, width / 3);
        r
    }

    #[test]
    fn an_approaching_car_is_one_pass_decided_by_its_latest_clear_reads() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        // far away: guesses that disagree with each other and with the plate, the box growing and moving
        let mut events = tr.on_read(at(read("W02FUE", 0.24, 0), 300, 48));
        events.extend(tr.on_read(at(read("WYWK9E1", 0.37, 100), 310, 44)));
        events.extend(tr.on_read(at(read("WD2RIU", 0.53, 200), 320, 56)));
        events.extend(tr.on_read(at(read("WD2R9B", 0.74, 300), 330, 57)));
        assert!(decided(&events).is_empty(), "{:?}", decided(&events));
        // the first confident read agreeing with the one before it decides
        assert_eq!(
            decided(&tr.on_read(at(read("WD2R9B", 0.98, 400), 340, 64))),
            vec!["WD2R9B"]
        );
        assert!(decided(&tr.finish()).is_empty());
        // three agreeing clear reads decide even when none is confident
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(at(read("8951203", 0.56, 0), 300, 45));
        tr.on_read(at(read("8951283", 0.79, 100), 302, 50));
        assert!(decided(&tr.on_read(at(read("8951283", 0.60, 200), 304, 50))).is_empty());
        assert_eq!(
            decided(&tr.on_read(at(read("8951283", 0.89, 300), 306, 56))),
            vec!["8951283"]
        );
        // a plate read right most of the time among slips: decided once its reads carry the vote
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        let mut events = Vec::new();
        let slips = [
            ("RK5R9C", 0.75),
            ("HK5R9C", 0.63),
            ("HK5R9C", 0.85),
            ("RK5R9C", 0.74),
            ("HX5R9C", 0.74),
        ];
        for (i, (text, conf)) in slips.into_iter().enumerate() {
            events.extend(tr.on_read(at(read(text, conf, i as i64 * 100), 300, 63)));
        }
        assert!(decided(&events).is_empty(), "{:?}", decided(&events));
        assert_eq!(
            decided(&tr.on_read(at(read("HK5R9C", 0.95, 500), 300, 80))),
            vec!["HK5R9C"]
        );
    }

    #[test]
    fn a_denied_misread_is_revised_once_by_clear_reads_at_its_place_but_an_opening_stands() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(at(read("RK867A", 0.99, 0), 300, 82));
        assert_eq!(
            decided(&tr.on_read(at(read("RK867A", 0.98, 100), 302, 86))),
            vec!["RK867A"]
        );
        // denied (nothing recorded); closer, the whole plate is read
        assert!(decided(&tr.on_read(at(read("RK867AD", 0.99, 200), 304, 91))).is_empty());
        assert_eq!(
            decided(&tr.on_read(at(read("RK867AD", 0.91, 300), 306, 92))),
            vec!["RK867AD"]
        );
        // once only
        tr.on_read(at(read("RK887AD", 0.99, 400), 306, 92));
        assert!(decided(&tr.on_read(at(read("RK887AD", 0.99, 500), 306, 92))).is_empty());
        assert!(decided(&tr.finish()).is_empty());

        // slips between the clear reads after the decision do not stop a revision the reads carry
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(at(read("1260205", 0.95, 0), 300, 57));
        assert_eq!(
            decided(&tr.on_read(at(read("1260205", 0.95, 100), 300, 60))),
            vec!["1260205"]
        );
        assert!(decided(&tr.on_read(at(read("1268205", 0.99, 200), 302, 67))).is_empty());
        assert!(decided(&tr.on_read(at(read("12682Q5", 0.60, 300), 302, 67))).is_empty());
        assert_eq!(
            decided(&tr.on_read(at(read("1268205", 0.99, 400), 304, 75))),
            vec!["1268205"]
        );

        // a revision to a plate the gate just opened for is the same vehicle, not a second opening
        let opens = RecentOpens::default();
        let mut tr = Tracker::new(cfg(), opens.clone());
        opens.record("RK867AD", t(0));
        tr.on_read(at(read("RK867A", 0.99, 1000), 300, 82));
        assert_eq!(
            decided(&tr.on_read(at(read("RK867A", 0.98, 1100), 302, 86))),
            vec!["RK867A"]
        );
        tr.on_read(at(read("RK867AD", 0.99, 1200), 304, 91));
        let ev = tr.on_read(at(read("RK867AD", 0.91, 1300), 306, 92));
        assert!(decided(&ev).is_empty(), "{:?}", decided(&ev));
        assert!(matches!(ev.first(), Some(TrackEvent::SameVehicle { .. })), "{ev:?}");

        // the gate opened for the first read: it stands
        let opens = RecentOpens::default();
        let mut tr = Tracker::new(cfg(), opens.clone());
        tr.on_read(at(read("4RJN062", 0.91, 0), 300, 74));
        assert_eq!(
            decided(&tr.on_read(at(read("4RJN062", 0.96, 100), 300, 74))),
            vec!["4RJN062"]
        );
        opens.record("4RJN062", t(100));
        tr.on_read(at(read("6RJN062", 0.92, 200), 302, 83));
        let mut events = tr.on_read(at(read("6RJN062", 0.94, 300), 302, 83));
        events.extend(tr.finish());
        assert!(decided(&events).is_empty(), "{:?}", decided(&events));
    }

    #[test]
    fn a_flickering_vehicle_is_not_a_second_pass_but_a_later_return_is() {
        let opens = RecentOpens::default();
        let mut tr = Tracker::new(cfg(), opens.clone());
        tr.on_read(read("ABC123", 0.95, 0));
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.95, 100))).len(), 1);
        opens.record("ABC123", t(100)); // the decision opened the gate
        tr.on_idle(t(1500)); // gone for a moment
        tr.on_read(read("ABC123", 0.95, 3000));
        let ev = tr.on_read(read("ABC123", 0.95, 3100));
        assert!(decided(&ev).is_empty());
        assert!(matches!(ev.first(), Some(TrackEvent::SameVehicle { .. })));
        tr.on_idle(t(5000));
        // back after the same-vehicle window: a new pass
        tr.on_read(read("ABC123", 0.95, 20_000));
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.95, 20_100))), vec!["ABC123"]);
    }

    #[test]
    fn a_denied_vehicle_that_returns_is_decided_again() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(read("ABC123", 0.95, 0));
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.95, 100))).len(), 1); // denied: nothing recorded
        tr.on_idle(t(1500));
        tr.on_read(read("ABC123", 0.95, 3000));
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.95, 3100))), vec!["ABC123"]);
    }

    #[test]
    fn a_waiting_vehicle_is_decided_after_the_dwell_time_even_below_early_confidence() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        assert!(decided(&tr.on_read(read("ABC123", 0.7, 0))).is_empty());
        assert!(decided(&tr.on_read(read("ABC123", 0.7, 1000))).is_empty());
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.7, 2600))), vec!["ABC123"]);
    }

    #[test]
    fn a_tailgater_with_a_similar_plate_gets_its_own_pass() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(read("ABC123", 0.95, 0));
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.95, 100))), vec!["ABC123"]);
        tr.on_read(read("XBC12Z", 0.95, 300));
        assert_eq!(decided(&tr.on_read(read("XBC12Z", 0.95, 400))), vec!["XBC12Z"]);
    }

    #[test]
    fn a_clipped_read_of_the_decided_plate_in_its_place_is_not_a_second_pass() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(read("JCY4712", 0.95, 0));
        assert_eq!(decided(&tr.on_read(read("JCY4712", 0.95, 100))), vec!["JCY4712"]);
        // the box clips the last two characters for a few frames, then the whole plate again
        let mut clipped = read("JCY47", 0.95, 200);
        clipped.candidate.bbox = Rect::new(10, 10, 70, 30);
        let mut events = tr.on_read(clipped.clone());
        clipped.at = t(300);
        events.extend(tr.on_read(clipped));
        events.extend(tr.on_read(read("JCY4712", 0.95, 400)));
        events.extend(tr.on_read(read("JCY4712", 0.95, 500)));
        events.extend(tr.finish());
        assert!(
            decided(&events).is_empty(),
            "one vehicle, one decision: {:?}",
            decided(&events)
        );
        // a short fragment elsewhere in the frame is not absorbed
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(read("JCY4712", 0.95, 0));
        tr.on_read(read("JCY4712", 0.95, 100));
        let mut other = read("JCY47", 0.95, 200);
        other.candidate.bbox = Rect::new(400, 300, 100, 30);
        tr.on_read(other.clone());
        other.at = t(300);
        assert_eq!(decided(&tr.on_read(other)), vec!["JCY47"]);
    }

    #[test]
    fn a_look_alike_car_elsewhere_in_the_frame_is_not_absorbed() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(read("ABC123", 0.95, 0));
        assert_eq!(decided(&tr.on_read(read("ABC123", 0.95, 100))), vec!["ABC123"]);
        let mut behind = read("ABC124", 0.95, 300);
        behind.candidate.bbox = Rect::new(400, 300, 100, 30); // another place in the frame
        tr.on_read(behind.clone());
        behind.at = t(400);
        assert_eq!(decided(&tr.on_read(behind)), vec!["ABC124"]);
    }

    #[test]
    fn a_single_read_is_still_reported_when_the_vehicle_leaves() {
        let mut tr = Tracker::new(cfg(), RecentOpens::default());
        tr.on_read(read("ABC123", 0.99, 0));
        let ev = tr.on_idle(t(2000));
        match ev.first() {
            Some(TrackEvent::Decide(v)) => assert_eq!((v.reads, v.early), (1, false)),
            other => panic!("expected a decision, got {other:?}"),
        }
    }

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("ABC123", "ABC123"), 0);
        assert_eq!(levenshtein("ABC123", "AB123"), 1);
        assert_eq!(levenshtein("ABC123", "XYZ789"), 6);
    }
}
