//! Buffering a request body in memory, at about its size, within a process-wide budget.
//!
//! Some phases need the whole body (validation against a model, mapping templates, the Lambda
//! event, a chunked body that must be checked against the payload cap before the backend sees
//! it). [`collect`] copies the body's frames into one buffer instead of keeping each frame: a
//! body sent as 1-byte chunks otherwise held one allocation, plus the transport buffer it was
//! cut from, per byte (10 MiB of 1-byte chunks raised the proxy's RSS by 525 MiB). The buffer
//! grows by doubling up to the cap, so it costs at most twice what it holds and never more
//! than the cap.
//!
//! Every buffer's capacity is charged to one [`BufferBudget`] (`--max-buffered-request-bytes`)
//! while the bytes are alive (the returned [`Bytes`] gives the charge back when its last clone
//! drops). A body that would take the total past the budget is refused (503), so many large
//! uploads at once degrade into refusals rather than an out-of-memory kill.

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The first allocation for a body of unknown length.
const FIRST_CHUNK: usize = 16 * 1024;

/// The bytes all buffered request bodies may hold together.
#[derive(Debug)]
pub struct BufferBudget {
    limit: u64,
    used: AtomicU64,
}

impl BufferBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(BufferBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes charged now.
    pub fn in_use(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `n` bytes, or nothing (and false) when that would pass the limit.
    fn take(&self, n: u64) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&t| t <= self.limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Why a body could not be buffered.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The body is larger than the cap.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The process-wide budget for buffered bodies is spent.
    #[error("the buffered request bodies of all requests would pass {0} bytes")]
    Budget(u64),
    /// Reading the body failed (the client went away, broke the framing, or was too slow).
    #[error("reading request body: {0}")]
    Body(crate::body::BodyError),
}

/// A buffer (or a body's one frame, kept as it came) and its charge against the budget;
/// given back when dropped.
struct Charged {
    buf: Vec<u8>,
    frame: Option<Bytes>,
    charge: u64,
    budget: Arc<BufferBudget>,
}

impl Charged {
    /// Makes room for `more` bytes: doubling, at most `max` in all, charged first.
    fn reserve(&mut self, more: usize, max: usize) -> Result<(), CollectError> {
        let need = self.buf.len() + more;
        if need > max {
            return Err(CollectError::TooLarge(max as u64));
        }
        if need <= self.buf.capacity() {
            return Ok(());
        }
        let cap = need.max(self.buf.capacity() * 2).max(FIRST_CHUNK).min(max);
        let extra = (cap - self.buf.capacity()) as u64;
        if !self.budget.take(extra) {
            return Err(CollectError::Budget(self.budget.limit));
        }
        self.charge += extra;
        self.buf.reserve_exact(cap - self.buf.len());
        Ok(())
    }
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        self.frame.as_deref().unwrap_or(&self.buf)
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.budget.give_back(self.charge);
    }
}

/// Reads `body` whole into one buffer of at most `max` bytes charged to `budget`.
/// `declared`: the body's declared length, when known (one allocation of that size).
pub async fn collect<B>(
    mut body: B,
    declared: Option<u64>,
    max: u64,
    budget: &Arc<BufferBudget>,
) -> Result<Bytes, CollectError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<crate::body::BodyError>,
{
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut held = Charged {
        buf: Vec::new(),
        frame: None,
        charge: 0,
        budget: budget.clone(),
    };
    if let Some(n) = declared {
        held.reserve(usize::try_from(n).unwrap_or(usize::MAX), max)?;
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CollectError::Body(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if held.charge == 0 {
            // The first bytes, without a declared length: kept as they came (no copy), and
            // charged the same, in case they are the whole body.
            if data.len() > max {
                return Err(CollectError::TooLarge(max as u64));
            }
            if !held.budget.take(data.len() as u64) {
                return Err(CollectError::Budget(held.budget.limit));
            }
            held.charge = data.len() as u64;
            held.frame = Some(data);
            continue;
        }
        if let Some(first) = held.frame.take() {
            // A second frame: from now on, one buffer. The first frame's charge moves to it.
            held.budget.give_back(std::mem::take(&mut held.charge));
            held.reserve(first.len() + data.len(), max)?;
            held.buf.extend_from_slice(&first);
        } else {
            held.reserve(data.len(), max)?;
        }
        held.buf.extend_from_slice(&data);
    }
    if held.frame.is_none() && held.buf.is_empty() {
        return Ok(Bytes::new());
    }
    Ok(Bytes::from_owner(held))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunks(
        n: usize,
        size: usize,
    ) -> StreamBody<
        impl futures::Stream<Item = Result<http_body::Frame<Bytes>, std::io::Error>> + Unpin,
    > {
        let data = Bytes::from(vec![b'x'; size]);
        StreamBody::new(futures::stream::iter(
            (0..n).map(move |_| Ok(http_body::Frame::data(data.clone()))),
        ))
    }

    #[tokio::test]
    async fn one_byte_chunks_cost_about_their_size() {
        let budget = BufferBudget::new(1 << 20);
        let bytes = collect(chunks(100_000, 1), None, 1 << 20, &budget)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 100_000);
        // Doubling from 16 KiB: 128 KiB for 100,000 bytes, and that is what is charged.
        assert_eq!(budget.in_use(), 128 * 1024);
        drop(bytes);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn the_cap_and_the_budget_refuse_and_give_back() {
        let budget = BufferBudget::new(1 << 20);
        let err = collect(chunks(11, 1), None, 10, &budget).await.unwrap_err();
        assert!(matches!(err, CollectError::TooLarge(10)), "{err}");
        assert_eq!(budget.in_use(), 0);
        // A declared length is charged up front, and refused at once past the budget.
        let held = collect(chunks(1, 700_000), Some(700_000), 1 << 30, &budget)
            .await
            .unwrap();
        assert_eq!(budget.in_use(), 700_000);
        let err = collect(chunks(4, 100_000), Some(400_000), 1 << 30, &budget)
            .await
            .unwrap_err();
        assert!(matches!(err, CollectError::Budget(_)), "{err}");
        // A body in one frame is kept without a copy, and charged while it lives.
        let one = collect(chunks(1, 300_000), None, 1 << 30, &budget)
            .await
            .unwrap();
        assert_eq!(budget.in_use(), 1_000_000);
        drop(held);
        drop(one);
        assert_eq!(budget.in_use(), 0);
        // Empty bodies cost nothing.
        assert!(
            collect(chunks(3, 0), None, 10, &budget)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
