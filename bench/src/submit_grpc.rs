//! Submit over gRPC directly (`chatrelay.v1.ChatService/SubmitMessage`): no
//! load generator speaks our proto, so this is a tonic driver with the same
//! concurrency as wrk's connections, spread over a few HTTP/2 channels.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context;
use chatrelay_proto::v1::{
    chat_service_client::ChatServiceClient, ResponseType, SubmitMessageRequest, ThinkingTime,
};
use tonic::{metadata::MetadataValue, transport::Endpoint};

use crate::latency::Latencies;

/// Calls in flight, channels they share, and how long to run.
#[derive(Clone, Copy, Debug)]
pub struct GrpcLoad {
    pub concurrency: usize,
    pub channels: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

#[derive(Debug, Default)]
pub struct GrpcReport {
    /// Successful calls completed in the measured window.
    pub calls: u64,
    pub errors: u64,
    pub latencies: Latencies,
    pub first_error: Option<String>,
}

/// Most calls one worker makes: a bound besides the clock.
const MAX_CALLS_PER_WORKER: u64 = 10_000_000;

impl GrpcLoad {
    /// Submits flat out; counts and times only calls that start inside the
    /// measured window (after the warm-up).
    pub async fn run(
        &self,
        grpc: SocketAddr,
        api_key: &str,
        start: Instant,
    ) -> anyhow::Result<GrpcReport> {
        let key: MetadataValue<_> = api_key.parse().context("API key as metadata")?;
        let endpoint = Endpoint::from_shared(format!("http://{grpc}"))?.tcp_nodelay(true);
        let mut clients = Vec::new();
        for _ in 0..self.channels.max(1) {
            clients.push(ChatServiceClient::new(endpoint.connect().await?));
        }
        let measure_from = start + self.warmup;
        let end = measure_from + self.duration;
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..self.concurrency {
            let mut client = clients[worker % clients.len()].clone();
            let key = key.clone();
            workers.spawn(async move {
                let mut report = GrpcReport::default();
                for _ in 0..MAX_CALLS_PER_WORKER {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let mut request = tonic::Request::new(SubmitMessageRequest {
                        message: "benchmark message".into(),
                        response_type: ResponseType::Auto as i32,
                        thinking_time: ThinkingTime::Standard as i32,
                        chat_id: None,
                    });
                    request.metadata_mut().insert("x-api-key", key.clone());
                    let result = client.submit_message(request).await;
                    if sent < measure_from {
                        continue;
                    }
                    match result {
                        Ok(_) => {
                            report.calls += 1;
                            report.latencies.record(sent.elapsed());
                        }
                        Err(status) => {
                            report.errors += 1;
                            report.first_error.get_or_insert_with(|| status.to_string());
                        }
                    }
                }
                report
            });
        }
        let mut total = GrpcReport::default();
        while let Some(report) = workers.join_next().await {
            let report = report?;
            total.calls += report.calls;
            total.errors += report.errors;
            total.latencies.merge(report.latencies);
            if total.first_error.is_none() {
                total.first_error = report.first_error;
            }
        }
        Ok(total)
    }
}
