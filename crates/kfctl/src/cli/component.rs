//! `kfctl component list [DIR] | add NAME [--path DIR] | remove NAME | set NAME key=value...`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::app::App;
use crate::config::{self, ComponentConfig};
use crate::registry::catalog::ParameterKind;

#[derive(Debug, clap::Subcommand)]
pub enum ComponentCommand {
    /// List the components of the release and which are enabled.
    List {
        /// The app directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Enable a catalog component, or add a kustomize directory of your own with --path.
    Add {
        /// A catalog name (see `kfctl component list`), or a new name with --path.
        name: String,
        /// Your own kustomize directory, inside the app directory.
        #[arg(long)]
        path: Option<PathBuf>,
        /// The app directory.
        #[arg(long, default_value = ".")]
        app: PathBuf,
    },
    /// Disable a catalog component (it stays listed) or drop one of your own.
    Remove {
        name: String,
        /// The app directory.
        #[arg(long, default_value = ".")]
        app: PathBuf,
    },
    /// Set component parameters. `password=VALUE` (or `password=-` to read it from stdin)
    /// stores only its bcrypt hash as `passwordHash`.
    Set {
        name: String,
        /// key=value pairs; `key=` removes the parameter.
        #[arg(required = true)]
        assignments: Vec<String>,
        /// The app directory.
        #[arg(long, default_value = ".")]
        app: PathBuf,
    },
}

pub fn run(cmd: ComponentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ComponentCommand::List { dir } => list(&dir),
        ComponentCommand::Add { name, path, app } => add(&app, &name, path.as_deref()),
        ComponentCommand::Remove { name, app } => remove(&app, &name),
        ComponentCommand::Set { name, assignments, app } => set(&app, &name, &assignments),
    }
}

fn open(dir: &Path) -> anyhow::Result<App> {
    App::open(dir).with_context(|| format!("cannot open the app in {}", dir.display()))
}

fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let app = open(dir)?;
    let release = app.release()?;
    let mut rows = vec![["NAME".to_string(), "ENABLED".into(), "BASE".into(), "DEPENDS ON".into(), "DESCRIPTION".into()]];
    for c in &app.config.components {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        match release.component(&c.name) {
            Some(spec) => rows.push([
                c.name.clone(),
                yes_no(c.enabled),
                yes_no(spec.base),
                if spec.depends_on.is_empty() { "-".into() } else { spec.depends_on.join(",") },
                spec.description.to_string(),
            ]),
            None => rows.push([
                c.name.clone(),
                yes_no(c.enabled),
                "-".into(),
                "-".into(),
                format!("your own: {}", c.path.as_deref().unwrap_or(Path::new("?")).display()),
            ]),
        }
    }
    let widths: Vec<usize> = (0..4).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut table = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            line.push_str(&format!("{:<width$}  ", row[i]));
        }
        line.push_str(&row[4]);
        table.push_str(line.trim_end());
        table.push('\n');
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    if let Err(e) = std::io::stdout().write_all(table.as_bytes()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    for (component, dep) in app.config.missing_dependencies() {
        eprintln!("warning: {component} needs {dep}, which is disabled");
    }
    Ok(ExitCode::SUCCESS)
}

fn add(dir: &Path, name: &str, path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut app = open(dir)?;
    let release = app.release()?;
    match (release.component(name), path) {
        (Some(spec), None) => {
            let component = app.config.component_mut(name);
            match component {
                Some(c) if c.enabled => {
                    println!("{name} is already enabled");
                    return Ok(ExitCode::SUCCESS);
                }
                Some(c) => c.enabled = true,
                None => app.config.components.push(ComponentConfig::named(&spec.name, true)),
            }
            app.save()?;
            println!("enabled {name}");
        }
        (Some(_), Some(_)) => bail!(
            "{name:?} is a catalog component and takes no --path\n  hint: give your own component another name"
        ),
        (None, None) => bail!(
            "unknown component {name:?} for Kubeflow {}\n  hint: `kfctl component list` shows the catalog ({}); add a kustomize directory of your own with --path",
            release.version,
            release.component_names()
        ),
        (None, Some(path)) => {
            if app.config.component(name).is_some() {
                bail!("{name:?} is already a component of this app\n  hint: choose another name, or `kfctl component remove {name}` first");
            }
            let relative = path_inside_app(&app.dir, path)?;
            if !app.dir.join(&relative).join("kustomization.yaml").is_file() {
                bail!("{} has no kustomization.yaml\n  hint: --path names a kustomize directory", app.dir.join(&relative).display());
            }
            app.config.components.push(ComponentConfig { path: Some(relative.clone()), ..ComponentConfig::named(name, true) });
            app.save()?;
            println!("added your component {name} ({})", relative.display());
        }
    }
    for (component, dep) in app.config.missing_dependencies().into_iter().filter(|(c, _)| c == name) {
        eprintln!("warning: {component} needs {dep}, which is disabled\n  hint: kfctl component add {dep}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `path` (absolute, or relative to the current directory) as a path relative to the app
/// directory, which it must be inside so the app stays self-contained.
fn path_inside_app(app_dir: &Path, path: &Path) -> anyhow::Result<PathBuf> {
    let app_abs = std::fs::canonicalize(app_dir).with_context(|| app_dir.display().to_string())?;
    let candidates = [path.to_path_buf(), app_dir.join(path)];
    for candidate in candidates.iter() {
        if let Ok(abs) = std::fs::canonicalize(candidate) {
            if let Ok(rel) = abs.strip_prefix(&app_abs) {
                return Ok(rel.to_path_buf());
            }
        }
    }
    bail!(
        "{} is not a directory inside the app directory {}\n  hint: copy it into the app directory so the app stays self-contained, then pass that path",
        path.display(),
        app_dir.display()
    )
}

fn remove(dir: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let mut app = open(dir)?;
    let release = app.release()?;
    let Some(index) = app.config.components.iter().position(|c| c.name == name) else {
        bail!(
            "unknown component {name:?}\n  hint: `kfctl component list {}` shows this app's components",
            dir.display()
        );
    };
    match release.component(name) {
        Some(spec) => {
            if !app.config.components[index].enabled {
                println!("{name} is already disabled");
                return Ok(ExitCode::SUCCESS);
            }
            app.config.components[index].enabled = false;
            app.save()?;
            println!("disabled {name}; `kfctl apply` will remove its objects from the cluster");
            let dependents: Vec<_> = release
                .dependents_of(name)
                .into_iter()
                .filter(|d| app.config.component(d).is_some_and(|c| c.enabled))
                .collect();
            if spec.base {
                eprintln!("warning: {name} is part of the base set of Kubeflow {}", release.version);
            }
            if !dependents.is_empty() {
                eprintln!(
                    "warning: {} depend on {name} and stay enabled; they may not work without it\n  hint: `kfctl component add {name}` undoes this",
                    dependents.join(", ")
                );
            }
        }
        None => {
            app.config.components.remove(index);
            app.save()?;
            println!("removed your component {name} (its directory is left in place)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set(dir: &Path, name: &str, assignments: &[String]) -> anyhow::Result<ExitCode> {
    let mut app = open(dir)?;
    let release = app.release()?;
    let spec = release.component(name).with_context(|| {
        format!("unknown component {name:?} for Kubeflow {}\n  hint: `kfctl component list` shows the catalog", release.version)
    })?;
    let component = app.config.component_mut(name).context("component missing from kfctl.yaml")?;
    for assignment in assignments {
        let Some((key, value)) = assignment.split_once('=') else {
            bail!("{assignment:?} is not key=value");
        };
        let (key, value) = if key == "password" && spec.parameters.iter().any(|p| p.kind == ParameterKind::BcryptHash) {
            let password = if value == "-" { read_password_from_stdin()? } else { value.to_string() };
            if password.is_empty() {
                bail!("the password is empty");
            }
            // dex compares against a bcrypt hash; the plaintext goes no further than this line.
            let hash = bcrypt::hash(password, 12).context("cannot hash the password")?;
            let param = spec.parameters.iter().find(|p| p.kind == ParameterKind::BcryptHash).map(|p| p.name.as_str()).unwrap_or("passwordHash");
            (param.to_string(), hash)
        } else {
            (key.to_string(), value.to_string())
        };
        let Some(param) = spec.parameter(&key) else {
            let known: Vec<_> = spec.parameters.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "{name} has no parameter {key:?}\n  hint: {}",
                if known.is_empty() { "it takes none; use patches or images in kfctl.yaml".to_string() } else { format!("known: {}", known.join(", ")) }
            );
        };
        if value.is_empty() {
            component.parameters.shift_remove(&key);
            println!("{name}: unset {key}");
            continue;
        }
        config::check_parameter(param.kind, &value).map_err(|why| anyhow::anyhow!("{name}.{key}: {why}"))?;
        let shown = if param.kind == ParameterKind::BcryptHash { "(bcrypt hash)".to_string() } else { value.clone() };
        component.parameters.insert(key.clone(), value);
        println!("{name}: {key} = {shown}");
    }
    app.save()?;
    Ok(ExitCode::SUCCESS)
}

fn read_password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
