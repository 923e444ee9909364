//! Logs of background processes started with `no_hup` (`zomg exec --bg`): read once, or
//! follow until the process exits (SPEC §5).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::Method;

use crate::client::Client;
use crate::error::Result;
use crate::exec_types::LogOutput;
use crate::names::{BoxName, ProjectName};

impl Client {
    /// `GET …/boxes/{name}/logs?pid=N[&lines=N]`: the log of background process `pid` (its
    /// last `lines` lines when given) and whether it still runs.
    pub async fn logs(
        &self,
        project: &ProjectName,
        name: &BoxName,
        pid: u32,
        lines: Option<u32>,
    ) -> Result<LogOutput> {
        let segs = Client::box_segments(project.as_str(), name.as_str(), &["logs"]);
        let mut query = vec![("pid", pid.to_string())];
        if let Some(n) = lines {
            query.push(("lines", n.to_string()));
        }
        self.call(self.request(Method::GET, &segs).query(&query))
            .await
    }

    /// `GET …/boxes/{name}/logs?pid=N&follow=true`: the raw log of `pid` as it grows, ending
    /// when the process exits. Errors before the stream starts (no such box or process) are
    /// returned here; a connection that breaks later is an `Err` item of the stream.
    pub async fn follow_logs(
        &self,
        project: &ProjectName,
        name: &BoxName,
        pid: u32,
    ) -> Result<LogStream> {
        let segs = Client::box_segments(project.as_str(), name.as_str(), &["logs"]);
        let request = self
            .request(Method::GET, &segs)
            .query(&[("pid", pid.to_string()), ("follow", "true".into())]);
        let response = self.send(request).await?;
        let client = self.clone();
        let inner = response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| client.transport_error(e)));
        Ok(LogStream {
            inner: Box::pin(inner),
        })
    }
}

/// A followed log: chunks of the raw log as the process writes them.
pub struct LogStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
}

impl fmt::Debug for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStream").finish_non_exhaustive()
    }
}

impl Stream for LogStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
