//! `kfctl images [DIR]`: every image the app runs, and every place the render names it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::OutputFormat;
use crate::app::App;
use crate::images::{self, ImageUse};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Sources: pod templates of every kind (custom resources included), the release catalog's \
    image rules (env, args, ConfigMap-held documents, ...), and a scan of every other string for \
    image references; an image only the scan found is warned about.\n\n\
    --output json prints {\"images\": [{image, reference: {registry, repository, tag, digest}, \
    locations: [{apiVersion, kind, namespace, name, field, rule}]}], \"podTemplate\": N, \"elsewhere\": N, \"scanOnly\": N}; \
    rule is pod-template, a catalog rule's id, or scan."
)]
pub struct ImagesArgs {
    /// The app directory (holding kfctl.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// List the images as the release names them, before the app's `images.overrides`.
    #[arg(long)]
    pub as_released: bool,
}

/// `--output json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonImages<'a> {
    images: &'a [ImageUse],
    /// Images named in at least one pod template.
    pod_template: usize,
    /// Images named only outside pod templates.
    elsewhere: usize,
    /// Of those, found only by the scan (no rule explains them).
    scan_only: usize,
}

pub fn run(args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.dir)
        .with_context(|| format!("cannot open app directory {}", args.dir.display()))?;
    let rendered = if args.as_released {
        app.render_as_released()
    } else {
        app.render()
    }
    .context("cannot render the app")?;
    let rules = &app.release()?.images;
    let found = images::find(rendered.objects.iter().map(|o| &o.object), rules);
    let pod_template = found.iter().filter(|i| images::in_pod_template(i)).count();
    let scan_only = found.iter().filter(|i| i.scan_only()).count();
    // One warning per image the scan found somewhere no rule looks: a new place to write a rule for.
    for image in &found {
        let unexplained: Vec<_> = image
            .locations
            .iter()
            .filter(|l| l.rule == images::SCAN)
            .collect();
        if let Some(first) = unexplained.first() {
            let more = if unexplained.len() > 1 {
                format!(" and {} more places", unexplained.len() - 1)
            } else {
                String::new()
            };
            eprintln!(
                "warning: {} is named where no image rule looks: {}{more}\n  hint: an override still rewrites it there; add a rule to the release catalog's images: section to say what it is",
                image.image,
                where_text(first)
            );
        }
    }
    // An override whose image the release does not name does nothing: say so.
    if !args.as_released && !app.config.images.is_empty() {
        let released = app.render_as_released().context("cannot render the app")?;
        let named = images::find(released.objects.iter().map(|o| &o.object), rules);
        for name in app
            .config
            .images
            .overrides
            .iter()
            .map(|o| &o.name)
            .filter(|n| !named.iter().any(|i| &&i.image == n))
        {
            eprintln!(
                "warning: images.overrides names {name}, which the render does not name\n  hint: `kfctl images --as-released` lists the names to override"
            );
        }
    }
    if args.output == OutputFormat::Json {
        let json = JsonImages {
            images: &found,
            pod_template,
            elsewhere: found.len() - pod_template,
            scan_only,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", table(&found));
    println!(
        "{} images: {pod_template} in pod templates, {} only elsewhere ({scan_only} found only by the scan)",
        found.len(),
        found.len() - pod_template
    );
    Ok(ExitCode::SUCCESS)
}

fn where_text(l: &images::Location) -> String {
    let object = if l.namespace.is_empty() {
        l.name.clone()
    } else {
        format!("{}/{}", l.namespace, l.name)
    };
    format!("{} {object} {}", l.kind, l.field)
}

/// IMAGE, COUNT, WHERE; an image's further places on the lines below it.
fn table(found: &[ImageUse]) -> String {
    let width = found
        .iter()
        .map(|i| i.image.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:width$}  {:>5}  WHERE\n", "IMAGE", "COUNT");
    for image in found {
        for (i, location) in image.locations.iter().enumerate() {
            let (name, count) = if i == 0 {
                (image.image.as_str(), image.locations.len().to_string())
            } else {
                ("", String::new())
            };
            let rule = if location.rule == images::POD_TEMPLATE {
                String::new()
            } else {
                format!(" ({})", location.rule)
            };
            out.push_str(&format!(
                "{name:width$}  {count:>5}  {}{rule}\n",
                where_text(location)
            ));
        }
    }
    out
}
