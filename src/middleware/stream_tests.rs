//! Unit tests of [`Pipeline::stream`] with a scripted provider.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;

use super::*;
use crate::clock::ManualClock;
use crate::middleware::tests_support::{Scripted, ScriptedStep};
use crate::provider::{
    CompletionRequest, ConnectorError, FinishReason, LLMProvider, Message, StreamChunk, Usage,
};

/// Logs the hooks it runs; says `Retry` to the first error of a call.
#[derive(Debug, Default)]
struct Probe {
    log: Mutex<Vec<String>>,
    ends: Mutex<Vec<StreamEnd>>,
    retry_first: bool,
}

#[async_trait]
impl Middleware for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    async fn on_request(
        &self,
        r: &mut CompletionRequest,
        _ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        self.log.lock().push(format!("request stream={}", r.stream));
        Ok(())
    }
    async fn on_error(
        &self,
        e: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        self.log.lock().push(format!("error {}", e.error_type()));
        Ok(if self.retry_first && ctx.attempt == 0 {
            ErrorAction::Retry
        } else {
            ErrorAction::Propagate
        })
    }
    async fn on_first_token(&self, _ctx: &mut MiddlewareContext) {
        self.log.lock().push("first token".into());
    }
    async fn on_stream_end(
        &self,
        end: &StreamEnd,
        _ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        self.log.lock().push("end".into());
        self.ends.lock().push(end.clone());
        Ok(())
    }
}

fn chunk(text: &str) -> Result<StreamChunk, ConnectorError> {
    Ok(StreamChunk {
        delta: text.into(),
        ..StreamChunk::default()
    })
}

fn finish() -> Result<StreamChunk, ConnectorError> {
    Ok(StreamChunk {
        finish_reason: Some(FinishReason::Stop),
        ..StreamChunk::default()
    })
}

fn usage(i: u64, o: u64) -> Result<StreamChunk, ConnectorError> {
    Ok(StreamChunk {
        usage: Some(Usage {
            input_tokens: i,
            output_tokens: o,
        }),
        ..StreamChunk::default()
    })
}

fn setup(
    steps: Vec<ScriptedStep>,
    retry_first: bool,
) -> (Arc<Scripted>, Arc<Probe>, Pipeline, ProviderSet) {
    let clock = Arc::new(ManualClock::new(0));
    let p = Arc::new(Scripted::new("p", steps, clock.clone()));
    let probe = Arc::new(Probe {
        retry_first,
        ..Probe::default()
    });
    let pipe = Pipeline::new(clock).with(probe.clone());
    let set: ProviderSet = [("p".to_owned(), p.clone() as Arc<dyn LLMProvider>)]
        .into_iter()
        .collect();
    (p, probe, pipe, set)
}

fn request() -> CompletionRequest {
    CompletionRequest::new("gpt-4o-mini", vec![Message::user("Say hello world.")])
}

#[tokio::test]
async fn hooks_run_before_open_at_first_token_and_at_the_end_with_reported_usage() {
    let steps = vec![ScriptedStep::Stream(vec![
        chunk(""),
        chunk("Hello"),
        chunk(" world"),
        finish(),
        usage(12, 2),
    ])];
    let (p, probe, pipe, set) = setup(steps, false);
    let s = pipe.stream(&set, "p", request()).await.expect("opens");
    assert_eq!(s.provider_id(), "p");
    let items: Vec<_> = s.collect().await;
    assert_eq!(items.len(), 5);
    let text: String = items
        .iter()
        .map(|c| c.as_ref().expect("no error").delta.clone())
        .collect();
    assert_eq!(text, "Hello world");
    assert_eq!(p.calls(), 1);
    assert_eq!(
        *probe.log.lock(),
        ["request stream=true", "first token", "end"]
    );
    let end = probe.ends.lock()[0].clone();
    assert!(end.usage_reported && end.error.is_none() && !end.cancelled);
    assert_eq!((end.usage.input_tokens, end.usage.output_tokens), (12, 2));
    assert_eq!(end.chunks, 5);
}

#[tokio::test]
async fn without_a_usage_chunk_the_usage_is_counted() {
    let steps = vec![ScriptedStep::Stream(vec![
        chunk("Hello"),
        chunk(" world"),
        finish(),
    ])];
    let (_p, probe, pipe, set) = setup(steps, false);
    let items: Vec<_> = pipe
        .stream(&set, "p", request())
        .await
        .expect("opens")
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    let end = probe.ends.lock()[0].clone();
    assert!(!end.usage_reported);
    assert_eq!(end.usage.output_tokens, 2, "\"Hello\" and \" world\"");
    assert_eq!(
        end.usage.input_tokens,
        crate::provider::admission::RequestSize::of(&request()).prompt_tokens
    );
}

#[tokio::test]
async fn an_error_before_the_first_byte_goes_through_on_error_and_may_be_retried() {
    let steps = vec![
        ScriptedStep::Fail(ConnectorError::Network {
            message: "refused".into(),
        }),
        ScriptedStep::Stream(vec![chunk("hi"), finish(), usage(5, 1)]),
    ];
    let (p, probe, pipe, set) = setup(steps, true);
    let items: Vec<_> = pipe
        .stream(&set, "p", request())
        .await
        .expect("opens")
        .collect()
        .await;
    assert!(items.iter().all(Result::is_ok));
    assert_eq!(p.calls(), 2);
    assert_eq!(
        *probe.log.lock(),
        [
            "request stream=true",
            "error network",
            "request stream=true",
            "first token",
            "end"
        ]
    );
}

#[tokio::test]
async fn an_open_error_may_fall_back_to_another_provider() {
    let clock = Arc::new(ManualClock::new(0));
    let busy = Arc::new(Scripted::new(
        "busy",
        vec![ScriptedStep::Fail(ConnectorError::Network {
            message: "down".into(),
        })],
        clock.clone(),
    ));
    let ok = Arc::new(Scripted::new(
        "ok",
        vec![ScriptedStep::Stream(vec![chunk("x"), finish()])],
        clock.clone(),
    ));
    let set: ProviderSet = [
        ("busy".to_owned(), busy as Arc<dyn LLMProvider>),
        ("ok".to_owned(), ok as Arc<dyn LLMProvider>),
    ]
    .into_iter()
    .collect();
    let pipe = Pipeline::new(clock).with(Arc::new(FallbackMiddleware::new(["busy", "ok"])));
    let s = pipe
        .stream(&set, "busy", request())
        .await
        .expect("falls back");
    assert_eq!(s.provider_id(), "ok");
    assert_eq!(s.tried(), ["busy", "ok"]);
}

#[tokio::test]
async fn an_error_mid_stream_is_surfaced_and_not_retried() {
    let steps = vec![
        ScriptedStep::Stream(vec![
            chunk("Hel"),
            Err(ConnectorError::Stream {
                message: "cut".into(),
            }),
        ]),
        ScriptedStep::Stream(vec![chunk("never")]),
    ];
    let (p, probe, pipe, set) = setup(steps, true);
    let items: Vec<_> = pipe
        .stream(&set, "p", request())
        .await
        .expect("opens")
        .collect()
        .await;
    assert_eq!(items.len(), 2);
    assert!(matches!(
        items[1],
        Err(PipelineError::Provider(ConnectorError::Stream { .. }))
    ));
    assert_eq!(p.calls(), 1, "not retried");
    assert_eq!(
        *probe.log.lock(),
        ["request stream=true", "first token", "end"]
    );
    let end = probe.ends.lock()[0].clone();
    assert!(matches!(end.error, Some(ConnectorError::Stream { .. })));
    assert_eq!(end.usage.output_tokens, 1);
}

#[tokio::test]
async fn a_dropped_stream_still_runs_its_end_hooks() {
    let steps = vec![ScriptedStep::Stream(vec![chunk("a"), chunk("b"), finish()])];
    let (_p, probe, pipe, set) = setup(steps, false);
    let mut s = pipe.stream(&set, "p", request()).await.expect("opens");
    assert!(s.next().await.is_some());
    drop(s);
    for _ in 0..100 {
        if !probe.ends.lock().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let end = probe.ends.lock()[0].clone();
    assert!(end.cancelled && end.error.is_none());
    assert_eq!(end.chunks, 1);
}

#[tokio::test]
async fn a_stream_dropped_after_its_usage_chunk_counts_as_complete() {
    let steps = vec![ScriptedStep::Stream(vec![
        chunk("a"),
        finish(),
        usage(3, 1),
    ])];
    let (_p, probe, pipe, set) = setup(steps, false);
    let mut s = pipe.stream(&set, "p", request()).await.expect("opens");
    let mut seen = 0;
    while let Some(c) = s.next().await {
        seen += 1;
        if c.expect("no error").usage.is_some() {
            break; // the end of the body is never polled
        }
    }
    assert_eq!(seen, 3);
    drop(s);
    for _ in 0..100 {
        if !probe.ends.lock().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let end = probe.ends.lock()[0].clone();
    assert!(!end.cancelled && end.usage_reported);
}
