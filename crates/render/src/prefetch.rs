//! Parsing resource files ahead of the build, on all cores.
//!
//! YAML parsing is most of a build's work, and every resource file is parsed independently of the
//! others. So before the (sequential, order-sensitive) build starts, [`ParsedFiles::prefetch`]
//! walks the kustomization tree the way the build will (resources, legacy bases, components),
//! collects the resource files it names, and parses them on worker threads. The build then takes
//! a file's documents from here instead of parsing it itself.
//!
//! The walk only guesses: anything it cannot read or parse is simply not prefetched, and the build
//! reads and parses that file itself, reporting errors exactly as before. A file's entry is keyed
//! by its canonical path and holds exactly what [`crate::yaml::parse_object_documents`] returns for it,
//! so taking it from here cannot change the result.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::kustomization::{self, KustomizationFile};
use crate::loader::Loader;
use crate::remote::{Remote, RemoteSource};
use crate::yaml::ObjectDocument;

/// Parsed documents of resource files, by canonical path, and the kustomizations read on the way.
#[derive(Debug, Default)]
pub struct ParsedFiles {
    /// Documents, and how many more times the build is expected to ask for them (the last taker
    /// gets them without a copy).
    files: HashMap<PathBuf, (usize, Vec<ObjectDocument>)>,
    /// Kustomizations that loaded without error, by directory (the loader's root).
    kustomizations: HashMap<PathBuf, KustomizationFile>,
}

impl ParsedFiles {
    /// Walk the kustomization tree under `root` and parse the resource files it names, in
    /// parallel. Never fails: what cannot be prefetched is left to the build.
    pub fn prefetch(root: &Loader, remotes: &dyn RemoteSource) -> ParsedFiles {
        let mut uses: HashMap<PathBuf, usize> = HashMap::new();
        let mut kustomizations = HashMap::new();
        collect(root, remotes, &mut uses, &mut kustomizations, &mut HashSet::new());
        let mut paths: Vec<(PathBuf, u64)> = uses
            .keys()
            .map(|p| (p.clone(), std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)))
            .collect();
        // Largest first, so one big file does not end up alone at the end of a worker's queue.
        paths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(paths.len()).min(8);
        let parsed: Mutex<HashMap<PathBuf, (usize, Vec<ObjectDocument>)>> = Mutex::new(HashMap::with_capacity(paths.len()));
        let next = AtomicUsize::new(0);
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, _)) = paths.get(i) else { break };
                let Ok(text) = std::fs::read_to_string(path) else { continue };
                let Ok(docs) = crate::yaml::parse_object_documents(&text, path) else { continue };
                let count = uses.get(path).copied().unwrap_or(1);
                parsed.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone(), (count, docs));
            }
        };
        if workers <= 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 1..workers {
                    scope.spawn(work);
                }
                work();
            });
        }
        ParsedFiles { files: parsed.into_inner().unwrap_or_else(|e| e.into_inner()), kustomizations }
    }

    /// The parsed documents of `path` (canonical), if prefetched.
    pub fn take(&mut self, path: &Path) -> Option<Vec<ObjectDocument>> {
        let (remaining, _) = self.files.get_mut(path)?;
        if *remaining > 1 {
            *remaining -= 1;
            return self.files.get(path).map(|(_, docs)| docs.clone());
        }
        self.files.remove(path).map(|(_, docs)| docs)
    }

    /// The kustomization in `dir` (a loader's root), if the walk loaded it.
    pub fn kustomization(&self, dir: &Path) -> Option<KustomizationFile> {
        self.kustomizations.get(dir).cloned()
    }
}

/// Record the resource files of the kustomization at `loader` and below, as the build will visit
/// them (a directory reached twice is built twice, so its files count twice).
fn collect(
    loader: &Loader,
    remotes: &dyn RemoteSource,
    uses: &mut HashMap<PathBuf, usize>,
    kustomizations: &mut HashMap<PathBuf, KustomizationFile>,
    visiting: &mut HashSet<PathBuf>,
) {
    if !visiting.insert(loader.root.clone()) {
        return; // a cycle: the build reports it
    }
    let k = match kustomizations.get(&loader.root) {
        Some(k) => k.clone(),
        None => match kustomization::load(&loader.root) {
            Ok(k) => {
                kustomizations.insert(loader.root.clone(), k.clone());
                k
            }
            Err(_) => {
                visiting.remove(&loader.root);
                return;
            }
        },
    };
    let kz = &k.kustomization;
    for entry in kz.resources.iter().flatten().chain(kz.components.iter().flatten()) {
        if crate::remote::is_remote(entry) && !loader.root.join(entry).exists() {
            // The source caches: asking here fetches what the build would fetch anyway.
            match crate::remote::parse(entry) {
                Ok(Remote::File { url }) => {
                    if let Ok(path) = remotes.file(&url) {
                        *uses.entry(path).or_default() += 1;
                    }
                }
                Ok(Remote::Repo(spec)) => {
                    if let Some(child) = remotes.repository(&spec).ok().and_then(|dir| loader.remote_child(&spec, &dir).ok()) {
                        collect(&child, remotes, uses, kustomizations, visiting);
                    }
                }
                Err(_) => {}
            }
            continue;
        }
        match loader.resolve_file(entry) {
            Ok(path) => *uses.entry(path).or_default() += 1,
            Err(_) => {
                if let Ok(child) = loader.child(entry) {
                    collect(&child, remotes, uses, kustomizations, visiting);
                }
            }
        }
    }
    visiting.remove(&loader.root);
}
