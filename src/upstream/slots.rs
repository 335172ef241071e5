//! A bound on the requests in flight to one upstream (`server.max_upstream_requests`).
//!
//! Without it, every request a client sends becomes an upstream connection at once: 10k
//! clients hitting a slow backend open 10k sockets to it, which costs the gateway a file
//! descriptor and buffers each (enough to run out of descriptors and fail requests with
//! 502) and hands the backend a flood it cannot serve anyway. With it, requests past the
//! bound wait in the gateway, in order, for a slot; the wait counts against
//! `server.upstream_timeout` (504 when it runs out). Envoy's per-cluster circuit breakers
//! (`max_requests`, default 1024) are the model. Nothing is forwarded without a slot.
//!
//! A slot is held until the upstream's response body ends or is dropped, so on HTTP/1.1
//! the bound is also the number of upstream connections busy at once. An upgraded
//! (WebSocket) connection gives its slot back at the 101: it can live for hours, and the
//! client connections it pairs with are bounded by `server.max_connections`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The slots of one upstream. Routes that forward to the same upstream share them.
pub struct Slots {
    limit: usize,
    semaphore: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// One request's claim on its upstream; the slot is free again when this drops.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Slots {
        Slots {
            limit,
            semaphore: Arc::new(Semaphore::new(limit)),
            metrics,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A free slot, waiting (first come, first served) while every slot is taken.
    pub async fn acquire(&self) -> Slot {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Slot { _permit: permit };
        }
        let _queued = self.metrics.upstream_queued();
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Slot { _permit: permit }
    }
}

/// A response body that holds its request's slot until it ends or is dropped.
pub struct SlotBody<B> {
    inner: B,
    slot: Option<Slot>,
}

impl<B> SlotBody<B> {
    pub fn new(inner: B, slot: Slot) -> SlotBody<B> {
        SlotBody {
            inner,
            slot: Some(slot),
        }
    }
}

impl<B: Body + Unpin> Body for SlotBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = polled {
            self.slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
