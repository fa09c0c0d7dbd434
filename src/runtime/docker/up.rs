//! `up` on Docker: converge the engine to the plan, then wait until every
//! service answers. Create means inspect, then create on 404, else reuse
//! (house rule 3): a container whose hash label matches the rendered files,
//! the image and the spec is kept (same id); anything else is replaced.
//! On failure what this run created is removed, unless `keep_on_failure`.

use std::collections::HashMap;
use std::time::Instant;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use sha2::{Digest, Sha256};

use super::{CONTAINER_GID, CONTAINER_UID, Docker, MEMORY_LIMIT, is_not_found};
use crate::naming::labels::{self, Object};
use crate::plan::Plan;
use crate::process::MALLOC_TUNABLES;
use crate::render::{CONTAINER_DATA_DIR, CONTAINER_LAB_DIR, layout};
use crate::runtime::api::{RuntimeError, UpOptions, hex};
use crate::runtime::ready::{self, Probe};

/// Bumped whenever the container spec below changes, so `up` replaces old containers.
const SPEC_VERSION: &str = "3";

/// One container of the plan.
struct Desired {
    name: String,
    /// The mail domain; `None` for the DNS container.
    domain: Option<String>,
    hostname: String,
    ip: String,
    cmd: Vec<String>,
    volume: Option<String>,
    probes: Vec<Probe>,
}

/// What this run created (for rollback).
#[derive(Default)]
struct Created {
    network: bool,
    volumes: Vec<String>,
}

/// Progress lines on stderr, with the elapsed time.
pub(crate) struct Progress {
    start: Instant,
    lab: String,
}

impl Progress {
    fn say(&self, what: impl std::fmt::Display) {
        eprintln!(
            "[{:5.1}s] {}: {what}",
            self.start.elapsed().as_secs_f64(),
            self.lab
        );
    }
}

fn desired(plan: &Plan) -> Vec<Desired> {
    let lab = CONTAINER_LAB_DIR;
    let dns_listen = plan.dns.addr().to_string();
    let mut out = vec![Desired {
        name: plan.dns.container.clone(),
        domain: None,
        hostname: format!("ns.{}", plan.variant.domains[0]),
        ip: plan.dns.ip.to_string(),
        cmd: vec![
            "serve-dns".into(),
            "--zones".into(),
            format!("{lab}/{}", layout::DNS_DIR),
            "--listen".into(),
            dns_listen,
            // one JSON line per query on stdout (`docker logs`), for `labctl trace`
            "--query-log".into(),
            "-".into(),
        ],
        volume: None,
        probes: vec![Probe::dns(plan, &plan.dns.container)],
    }];
    for s in &plan.servers {
        out.push(Desired {
            name: s.container.clone(),
            domain: Some(s.domain.clone()),
            hostname: s.hostname.clone(),
            ip: s.ip.to_string(),
            cmd: vec![
                "serve-mail".into(),
                "--config".into(),
                format!("{lab}/{}", layout::server_config(&s.domain)),
            ],
            volume: Some(s.volume.clone()),
            probes: Probe::mail(s, &s.container),
        });
    }
    out
}

impl Docker {
    /// Converges lab `plan` and waits until it answers.
    pub(crate) async fn up_lab(
        &self,
        plan: &Plan,
        files_hash: &str,
        options: &UpOptions,
    ) -> Result<(), RuntimeError> {
        let progress = Progress {
            start: Instant::now(),
            lab: plan.name.clone(),
        };
        let image = self.ensure_image().await?;
        progress.say(format_args!(
            "image {} {}",
            super::image_reference(),
            if image.created {
                "created from this executable"
            } else {
                "present"
            }
        ));
        let mut created = Created::default();
        let result = self
            .converge(
                plan,
                files_hash,
                &image.id,
                options,
                &progress,
                &mut created,
            )
            .await;
        if let Err(e) = result {
            if options.keep_on_failure {
                progress.say("failed; keeping the containers (--keep-on-failure)");
            } else {
                progress.say("failed; rolling back");
                self.rollback(plan, &created).await;
            }
            return Err(e);
        }
        if let Some(old) = &image.replaced {
            // The previous build; other labs may still use it.
            self.remove_unused_image(old).await;
        }
        Ok(())
    }

    async fn converge(
        &self,
        plan: &Plan,
        files_hash: &str,
        image_id: &str,
        options: &UpOptions,
        progress: &Progress,
        created: &mut Created,
    ) -> Result<(), RuntimeError> {
        let (uid, gid) = prepare_lab_dir(plan)?;
        created.network = self.ensure_network(plan).await?;
        progress.say(format_args!(
            "network {} {} {}",
            plan.name,
            plan.subnet_cidr(),
            if created.network {
                "created"
            } else {
                "present"
            }
        ));
        for s in &plan.servers {
            match self.api.inspect_volume(&s.volume).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    let request = VolumeCreateRequest {
                        name: Some(s.volume.clone()),
                        labels: Some(labels::labels(
                            plan.variant.number.into(),
                            &plan.dir,
                            Object::Volume(&s.domain),
                            None,
                        )),
                        ..Default::default()
                    };
                    self.api
                        .create_volume(request)
                        .await
                        .map_err(|e| self.err(format!("create volume {}", s.volume), e))?;
                    created.volumes.push(s.volume.clone());
                    progress.say(format_args!("volume {} created", s.volume));
                }
                Err(e) => return Err(self.err(format!("inspect volume {}", s.volume), e)),
            }
        }
        let hash = {
            let mut h = Sha256::new();
            // The optional rule folders change what a mail container mounts.
            let mounts = crate::render::mounts(&plan.dir, Some(&plan.servers[0].domain)).join(",");
            for part in [
                files_hash,
                image_id,
                SPEC_VERSION,
                &format!("{uid}:{gid}"),
                &mounts,
            ] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            hex(&h.finalize())
        };
        let desired = desired(plan);
        // Containers of this lab that the plan no longer has.
        for c in self
            .containers(Some(u32::from(plan.variant.number)))
            .await?
        {
            let name = super::container_name(&c);
            if !desired.iter().any(|d| d.name == name) {
                self.remove(&name).await?;
                progress.say(format_args!("container {name} removed (not in the plan)"));
            }
        }
        // The servers do not depend on each other at start: create them at once.
        let ensure = desired
            .iter()
            .map(|d| self.ensure_container(plan, d, &hash, (uid, gid), options.recreate, progress));
        for r in futures_util::future::join_all(ensure).await {
            r?;
        }
        let probes: Vec<Probe> = desired.iter().flat_map(|d| d.probes.clone()).collect();
        let served: Vec<String> = plan.servers[0]
            .ports
            .enabled()
            .map(|(n, p)| format!("{n}/{p}"))
            .collect();
        progress.say(format_args!(
            "waiting for {} services: dns/{}{}",
            probes.len(),
            plan.dns.port,
            if served.is_empty() {
                String::new()
            } else {
                format!(", per mail server {}", served.join(" "))
            }
        ));
        let deadline = Instant::now() + options.timeout;
        let names: Vec<String> = desired.iter().map(|d| d.name.clone()).collect();
        let mut last = usize::MAX;
        let outcome = ready::wait_all(
            &probes,
            deadline,
            || self.check_running(&names),
            |done, total| {
                if done != last && done < total {
                    last = done;
                    progress.say(format_args!("{done}/{total} services answer"));
                }
            },
        )
        .await?;
        if let Err(left) = outcome {
            let failing = &left[0].node;
            return Err(RuntimeError::NotReady(format!(
                "not answering after {} s: {}\nlast log lines of {failing}:\n{}\n  what to do: read `labctl logs --variant {}`, raise --timeout, or keep the containers with --keep-on-failure",
                options.timeout.as_secs(),
                ready::describe(&left),
                self.tail(failing).await,
                plan.variant.number
            )));
        }
        progress.say(format_args!("all {} services answer", probes.len()));
        Ok(())
    }

    /// Fails when a container stopped or restarted (it crashed).
    async fn check_running(&self, names: &[String]) -> Result<(), RuntimeError> {
        for name in names {
            let i = self
                .api
                .inspect_container(name, None)
                .await
                .map_err(|e| self.err(format!("inspect container {name}"), e))?;
            let state = i.state.unwrap_or_default();
            let crashed = state.running != Some(true)
                || state.restarting == Some(true)
                || i.restart_count.unwrap_or(0) > 0;
            if crashed {
                return Err(RuntimeError::NotReady(format!(
                    "container {name} stopped (exit code {}{})\nlast log lines of {name}:\n{}",
                    state.exit_code.unwrap_or_default(),
                    if state.oom_killed == Some(true) {
                        ", killed: out of memory"
                    } else {
                        ""
                    },
                    self.tail(name).await
                )));
            }
        }
        Ok(())
    }

    async fn tail(&self, name: &str) -> String {
        let lines = self.log_lines(name, "20").await;
        if lines.is_empty() {
            "  (no output)".into()
        } else {
            lines
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }

    pub(super) async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.api.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.err(format!("remove container {name}"), e)),
        }
    }

    async fn ensure_container(
        &self,
        plan: &Plan,
        d: &Desired,
        hash: &str,
        (uid, gid): (u32, u32),
        recreate: bool,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        match self.api.inspect_container(&d.name, None).await {
            Ok(i) => {
                let same = i
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(|l| l.get(labels::HASH))
                    .is_some_and(|h| h == hash);
                if same && !recreate {
                    let running = i.state.as_ref().and_then(|s| s.running) == Some(true);
                    if !running {
                        self.start(&d.name).await?;
                        progress.say(format_args!("container {} started", d.name));
                    } else {
                        progress.say(format_args!("container {} unchanged", d.name));
                    }
                    return Ok(());
                }
                self.remove(&d.name).await?;
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(self.err(format!("inspect container {}", d.name), e)),
        }
        let object = match &d.domain {
            Some(domain) => Object::Mail(domain),
            None => Object::Dns,
        };
        let object = labels::labels(plan.variant.number.into(), &plan.dir, object, Some(hash));
        // Least privilege (issue 13): only this node's files, read-only.
        let mut binds: Vec<String> = crate::render::mounts(&plan.dir, d.domain.as_deref())
            .iter()
            .map(|rel| {
                format!(
                    "{}:{CONTAINER_LAB_DIR}/{rel}:ro",
                    plan.dir.join(rel).display()
                )
            })
            .collect();
        if let Some(v) = &d.volume {
            binds.push(format!("{v}:{CONTAINER_DATA_DIR}"));
        }
        let body = ContainerCreateBody {
            image: Some(super::image_reference()),
            cmd: Some(d.cmd.clone()),
            hostname: Some(d.hostname.clone()),
            user: Some(format!("{uid}:{gid}")),
            labels: Some(object),
            env: Some(
                [
                    Some("RUST_LOG=info".to_string()),
                    // The lab CA is the only trust store of a mail node (R1);
                    // a FROM-scratch image has no system roots, and rustls'
                    // native-roots loaders fail without any. The DNS node
                    // makes no TLS connection and does not mount the CA.
                    d.domain
                        .as_ref()
                        .map(|_| format!("SSL_CERT_FILE={CONTAINER_LAB_DIR}/{}", layout::CA_CERT)),
                    Some(MALLOC_TUNABLES.to_string()),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
            host_config: Some(HostConfig {
                binds: Some(binds),
                network_mode: Some(plan.name.clone()),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(vec!["NET_BIND_SERVICE".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(MEMORY_LIMIT),
                pids_limit: Some(256),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                dns: Some(vec![plan.dns.ip.to_string()]),
                tmpfs: Some(HashMap::from([(
                    "/tmp".to_string(),
                    "rw,nosuid,nodev,noexec,size=16m".to_string(),
                )])),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    plan.name.clone(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(d.ip.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&d.name)
            .build();
        self.api
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.err(format!("create container {}", d.name), e))?;
        self.start(&d.name).await?;
        progress.say(format_args!("container {} created ({})", d.name, d.ip));
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.api
            .start_container(name, None)
            .await
            .map_err(|e| self.err(format!("start container {name}"), e))
    }

    /// Removes the lab's containers and network, and the volumes this run created.
    async fn rollback(&self, plan: &Plan, created: &Created) {
        if let Ok(containers) = self.containers(Some(u32::from(plan.variant.number))).await {
            for c in containers {
                let _ = self.remove(&super::container_name(&c)).await;
            }
        }
        let _ = self.api.remove_network(&plan.name).await;
        for v in &created.volumes {
            let _ = self
                .api
                .remove_volume(v, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await;
        }
    }
}

/// The user the containers run as, and the lab directory made readable by it.
///
/// The servers read the lab directory (keys are 0600), so they run as its
/// owner. When that is root (labctl run as root), they run as
/// [`CONTAINER_UID`] instead and the directory is handed to that user
/// (root still reads it). A named volume takes its owner from the image's
/// `/data`, which belongs to [`CONTAINER_UID`].
fn prepare_lab_dir(plan: &Plan) -> Result<(u32, u32), RuntimeError> {
    use std::os::unix::fs::MetadataExt;
    // render claimed it; checked again right before a recursive chown (issue 13).
    crate::runtime::labdir::ensure_lab_dir(&plan.dir)?;
    let meta = std::fs::metadata(&plan.dir).map_err(RuntimeError::io(format!(
        "cannot read {}",
        plan.dir.display()
    )))?;
    if meta.uid() != 0 {
        if meta.uid() != CONTAINER_UID {
            return Err(RuntimeError::Environment(format!(
                "the lab directory {} belongs to uid {}, but the lab containers run as uid {CONTAINER_UID} \
                 (the owner of their data volumes)\n  what to do: run labctl as uid {CONTAINER_UID} or as root, or use `labctl up --runtime local`",
                plan.dir.display(),
                meta.uid()
            )));
        }
        return Ok((meta.uid(), meta.gid()));
    }
    chown_tree(&plan.dir, CONTAINER_UID, CONTAINER_GID)?;
    Ok((CONTAINER_UID, CONTAINER_GID))
}

fn chown_tree(path: &std::path::Path, uid: u32, gid: u32) -> Result<(), RuntimeError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)
        .map_err(RuntimeError::io(format!("cannot read {}", path.display())))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(RuntimeError::io(format!("cannot chown {}", path.display())))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)
            .map_err(RuntimeError::io(format!("cannot list {}", path.display())))?
        {
            let entry =
                entry.map_err(RuntimeError::io(format!("cannot list {}", path.display())))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}
