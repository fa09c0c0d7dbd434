//! `labctl doctor`: is this machine ready to run labs? Docker reachable
//! (and its version), permission on the socket, the binary static (it
//! becomes the image), the variants' subnets free, loopback usable for the
//! local runtime; what to do about each problem.

use std::process::ExitCode;

use anyhow::Context;

use crate::naming::labels;
use crate::plan::{Plan, PlanOptions, RuntimeKind};
use crate::runtime::docker::{Docker, elf_problem, image_reference};
use crate::variant::Catalog;

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: &str, detail: impl std::fmt::Display) {
        println!("ok    {what}: {detail}");
    }
    fn warn(&self, what: &str, detail: impl std::fmt::Display) {
        println!("note  {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display, todo: &str) {
        self.problems += 1;
        println!("FAIL  {what}: {detail}\n      what to do: {todo}");
    }
}

/// Runs `labctl doctor`; exit 3 when something must be fixed.
pub async fn run(catalog: &Catalog) -> anyhow::Result<ExitCode> {
    let mut r = Report { problems: 0 };
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    match std::fs::read(&exe).map(|b| elf_problem(&b)) {
        Ok(None) => r.ok(
            "binary",
            format!("{} is a static Linux executable (it becomes the image {})", exe.display(), image_reference()),
        ),
        Ok(Some(why)) => r.fail(
            "binary",
            format!("{}: {why}", exe.display()),
            "build the image with `make image` (a static build), or use `labctl up --runtime local`",
        ),
        Err(e) => r.fail("binary", format!("{}: {e}", exe.display()), "check the file"),
    }
    async {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| crate::runtime::docker::DEFAULT_HOST.into());
        if let Some(path) = host.strip_prefix("unix://") {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            match std::fs::metadata(path) {
                Ok(m) => r.ok(
                    "socket",
                    format!("{path} (owner uid {}, gid {}, mode {:o})", m.uid(), m.gid(), m.permissions().mode() & 0o7777),
                ),
                Err(e) => r.fail(
                    "socket",
                    format!("{path}: {e}"),
                    "install and start Docker (`sudo systemctl start docker`) or set DOCKER_HOST; without Docker use `labctl up --runtime local`",
                ),
            }
        }
        match Docker::connect().await {
            Err(e) => r.fail("docker", e.to_string().lines().next().unwrap_or_default(), "see the socket line above; `labctl up --runtime local` works without Docker"),
            Ok(d) => {
                match d.version().await {
                    Ok((v, api)) => r.ok("docker", format!("engine {v}, API {api} at {}", d.host)),
                    Err(e) => r.fail("docker", e, "check the engine"),
                }
                match d.api.inspect_image(&image_reference()).await {
                    Ok(i) => r.ok("image", format!("{} present ({:.1} MB)", image_reference(), i.size.unwrap_or(0) as f64 / 1e6)),
                    Err(_) => r.warn("image", format!("{} absent; `labctl up` creates it from this executable", image_reference())),
                }
                match d.networks().await {
                    Err(e) => r.fail("networks", e, "check the engine"),
                    Ok(networks) => {
                        let mut taken = Vec::new();
                        for v in catalog.iter() {
                            let plan = Plan::build(v, &PlanOptions { runtime: RuntimeKind::Docker, dir: "/".into(), subnet: None })?;
                            let ours = plan.subnet_cidr();
                            for n in &networks {
                                let mine = n.labels.as_ref().and_then(labels::variant_of) == Some(u32::from(v.number));
                                let subnets = n.ipam.as_ref().and_then(|i| i.config.clone()).unwrap_or_default();
                                for s in subnets.iter().filter_map(|c| c.subnet.as_deref()) {
                                    let overlap = crate::runtime::docker::Cidr::parse(s).zip(crate::runtime::docker::Cidr::parse(&ours)).is_some_and(|(a, b)| a.overlaps(&b));
                                    if overlap && !mine {
                                        taken.push(format!("variant {} ({ours}) overlaps network {:?} ({s})", v.number, n.name.clone().unwrap_or_default()));
                                    }
                                }
                            }
                        }
                        if taken.is_empty() {
                            r.ok("subnets", format!("10.77.N.0/24 free for all {} variants (or used by their own lab)", catalog.iter().count()));
                        } else {
                            for t in taken {
                                r.fail("subnet", t, "remove that network or pass `--subnet 10.99.N.0/24` to `labctl up`");
                            }
                        }
                    }
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    }.await?;
    match std::net::TcpListener::bind("127.77.0.1:0") {
        Ok(_) => r.ok(
            "loopback",
            "127.77.x.y addresses can be bound (local runtime)",
        ),
        Err(e) => r.fail(
            "loopback",
            format!("cannot bind 127.77.0.1: {e}"),
            "the local runtime needs the 127.0.0.0/8 loopback network",
        ),
    }
    if r.problems == 0 {
        println!("ready");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problem(s)", r.problems);
        Ok(ExitCode::from(crate::exit::Kind::Environment as u8))
    }
}
