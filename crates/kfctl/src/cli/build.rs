//! `kfctl build DIR [-o FILE]`: render a kustomize directory like `kubectl kustomize DIR`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;
use serde_json::Value;

use crate::registry::remote::{self, RemoteFetcher};

/// Where each object's origin (source file and kustomization chain) is shown, if at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OriginsMode {
    /// Not shown: output is what `kubectl kustomize` prints.
    #[default]
    None,
    /// A `# Source: ...` comment block before each document.
    Comments,
    /// A `config.kubernetes.io/origin` annotation on each object (kustomize's buildMetadata
    /// `originAnnotations` key).
    Annotations,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The kustomization directory to render.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Write the YAML to this file instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Show where each object came from.
    #[arg(long, value_enum, default_value_t)]
    pub origins: OriginsMode,
    /// Read remote resources (`https://HOST/PATH`) as `BASE/HOST/PATH`: an http(s):// URL or a
    /// local directory laid out so. Without it they come from their hosts. Either way they are
    /// cached (`$KFCTL_CACHE_DIR`, else `~/.cache/kfctl`).
    #[arg(long, value_name = "BASE")]
    pub mirror: Option<String>,
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let remotes = RemoteFetcher::new(args.mirror.as_deref(), remote::default_cache_dir());
    let build = kfctl_render::build_with_remotes(&args.dir, &remotes)
        .with_context(|| format!("cannot build kustomization {}", args.dir.display()))?;
    // kustomize prints deprecation warnings on stderr, one per line, as it loads kustomizations.
    for warning in &build.warnings {
        eprintln!("{warning}");
    }
    let text = render(&build.resources, args.origins);
    match &args.output {
        Some(path) => std::fs::write(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes()).context("writing to stdout")?;
            stdout.flush().context("writing to stdout")?;
        }
    }
    // The process ends here: freeing every node of a large render one by one would only add
    // to its run time (a few percent on Kubeflow's example/).
    std::mem::forget(build);
    Ok(ExitCode::SUCCESS)
}

fn origin_text(res: &kfctl_render::Resource) -> (String, Vec<String>) {
    let file = res.origin.file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "(generated)".into());
    let chain = res.origin.kustomizations.iter().map(|k| k.display().to_string()).collect();
    (file, chain)
}

/// The YAML, with origins added as asked.
pub fn render(resources: &[kfctl_render::Resource], mode: OriginsMode) -> String {
    match mode {
        OriginsMode::None => kfctl_render::to_yaml(resources),
        OriginsMode::Comments => {
            let mut out = String::new();
            for (i, res) in resources.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                let (file, chain) = origin_text(res);
                out.push_str(&format!("# Source: {file}\n"));
                for k in chain {
                    out.push_str(&format!("# Kustomization: {k}\n"));
                }
                kfctl_render::yaml::write_document(&mut out, &res.object);
            }
            out
        }
        OriginsMode::Annotations => {
            let annotated: Vec<kfctl_render::Resource> = resources
                .iter()
                .map(|res| {
                    let mut res = res.clone();
                    let (file, chain) = origin_text(&res);
                    let value = format!("path: {file}\nkustomizations:\n{}", chain.iter().map(|k| format!("- {k}\n")).collect::<String>());
                    let meta = res.metadata_mut();
                    let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
                    if let Value::Object(a) = annotations {
                        a.insert("config.kubernetes.io/origin".into(), Value::String(value));
                    }
                    res
                })
                .collect();
            kfctl_render::to_yaml(&annotated)
        }
    }
}
