//! `labctl image`: the lab image `labctl:<version>` from this executable
//! (what `up` does by itself when the image is absent or holds another build).

use std::process::ExitCode;

use crate::runtime::docker::{Docker, image_reference};

/// Runs `labctl image`.
pub async fn run() -> anyhow::Result<ExitCode> {
    async {
        let docker = Docker::connect().await?;
        let image = docker.ensure_image().await?;
        if let Some(old) = &image.replaced {
            docker.remove_unused_image(old).await;
        }
        let size = docker
            .api
            .inspect_image(&image_reference())
            .await
            .ok()
            .and_then(|i| i.size)
            .unwrap_or(0);
        println!(
            "{} {} ({}, {:.1} MB)",
            image_reference(),
            if image.created {
                "created"
            } else {
                "is up to date"
            },
            image.id,
            size as f64 / 1e6
        );
        Ok(ExitCode::SUCCESS)
    }
    .await
}
