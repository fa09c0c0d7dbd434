//! The short-lived capture containers of `labctl capture` (docs/capture.md):
//! one per node, from the lab image, in the node's network namespace
//! (`network_mode: container:<node>`), with `NET_RAW` as its only
//! capability, running `labctl capture-node`. They carry the lab's labels
//! (role `capture`), so `down` removes a leftover and `labs` ignores them.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::Stream;

use super::{Docker, is_not_found};
use crate::naming::labels::{self, Object};
use crate::runtime::RuntimeError;

/// The output of a capture container: its stdout and stderr, as they come.
pub type CaptureOutput =
    Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// How long a capture may stream (the API timeout would cut it at 60 s).
const STREAM_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a capture container has to write its last records after SIGTERM.
const STOP_GRACE_SECS: i32 = 5;

/// The name of the capture container of `node`.
pub fn capture_container(node: &str) -> String {
    format!("{node}-capture")
}

impl Docker {
    /// Creates, attaches to and starts the capture container of `node`
    /// (a container of lab `variant` rendered into `dir`).
    pub async fn start_capture(
        &self,
        variant: u32,
        dir: &std::path::Path,
        node: &str,
    ) -> Result<CaptureOutput, RuntimeError> {
        let name = capture_container(node);
        self.remove_capture(&name).await?;
        let body = ContainerCreateBody {
            image: Some(super::image_reference()),
            cmd: Some(vec!["capture-node".into()]),
            // A capability is effective only for root without ambient
            // capabilities; it is root in a namespace it shares, with no other capability.
            user: Some("0:0".into()),
            labels: Some(labels::labels(variant, dir, Object::Capture, None)),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{node}")),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(vec!["NET_RAW".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(64 * 1024 * 1024),
                pids_limit: Some(32),
                tmpfs: Some(HashMap::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.api
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.err(format!("create container {name}"), e))?;
        let streaming = self.api.clone().with_timeout(STREAM_TIMEOUT);
        let attach = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .build();
        let output = streaming
            .attach_container(&name, Some(attach))
            .await
            .map_err(|e| self.err(format!("attach to {name}"), e))?
            .output;
        self.api
            .start_container(&name, None)
            .await
            .map_err(|e| self.err(format!("start container {name}"), e))?;
        Ok(output)
    }

    /// Asks a capture container to end (SIGTERM: it writes its counts and
    /// exits), killing it after a grace period.
    pub async fn stop_capture(&self, name: &str) -> Result<(), RuntimeError> {
        let options = StopContainerOptionsBuilder::default()
            .t(STOP_GRACE_SECS)
            .build();
        match self.api.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // 304: it already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("stop container {name}"), e)),
        }
    }

    /// Removes a capture container (absent is fine).
    pub async fn remove_capture(&self, name: &str) -> Result<(), RuntimeError> {
        self.remove(name).await
    }

    /// Removes every capture container of lab `variant` (leftovers of a
    /// killed capture); returns their names.
    pub async fn remove_captures(&self, variant: u32) -> Result<Vec<String>, RuntimeError> {
        let mut removed = Vec::new();
        for c in self.containers(Some(variant)).await? {
            let role = c.labels.as_ref().and_then(|l| l.get(labels::ROLE));
            if role.map(String::as_str) == Some(labels::ROLE_CAPTURE) {
                let name = super::container_name(&c);
                self.remove(&name).await?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}
