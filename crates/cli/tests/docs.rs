//! `sprout man` (sprout(1)) and `sprout completions SHELL`: the page renders without
//! warnings and names every command and every flag that the commands' `--help` shows;
//! each completion script names every command and works in its shell (bash completes
//! "sprout pu" to "put", zsh's compinit registers `_sprout`, fish offers every command and
//! put's options).

use std::process::{Command, Stdio};

const SPROUT: &str = env!("CARGO_BIN_EXE_sprout");

fn sprout(args: &[&str]) -> String {
    let out = Command::new(SPROUT).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "sprout {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The commands listed under "Commands:" in a `--help` text (without `help`).
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// Every command path below the top level: ["stats"], ["binlog", "inspect"], ...
fn all_commands() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut todo: Vec<Vec<String>> = commands(&sprout(&["--help"]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        for sub in commands(&sprout(&args)) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        out.push(path);
    }
    out
}

/// Option names (`-x`, `--name`) in a help text.
fn option_names(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    for word in help.split(|c: char| c.is_whitespace() || ",()[]`'\"=/".contains(c)) {
        let name: String = word
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let bare = name.trim_start_matches('-');
        if name.starts_with('-')
            && bare.starts_with(|c: char| c.is_ascii_alphabetic())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn man_page_renders_and_lists_every_command_and_flag() {
    assert!(
        have("groff"),
        "cannot run: groff, to render manual pages (apt-get install groff-base)"
    );
    let page = sprout(&["man"]);
    assert!(page.is_ascii());
    let dir = std::env::temp_dir().join(format!("sprout-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sprout.1");
    std::fs::write(&file, &page).unwrap();
    let lint = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        lint.status.success() && lint.stderr.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&lint.stderr)
    );
    let plain = page
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "");
    let mut help_text = sprout(&["--help"]);
    let cmds = all_commands();
    assert!(cmds.len() >= 15, "{cmds:?}");
    for path in &cmds {
        let heading = format!(".SS \"sprout {}\"", path.join(" "));
        assert!(plain.contains(&heading), "no {heading} in sprout(1)");
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        help_text.push_str(&sprout(&args));
    }
    for name in option_names(&help_text) {
        let found = plain.match_indices(&name).any(|(i, _)| {
            !plain[i + name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '-')
        });
        assert!(found, "{name} (in --help) is not in sprout(1)");
    }
    assert!(
        !plain.contains("sprout-stats(1)"),
        "refers to pages that do not exist"
    );
}

/// Runs `script` with `shell -c`; returns stdout.
fn shell(shell: &str, script: &str) -> String {
    let out = Command::new(shell).arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{shell} -c {script:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_load_and_complete() {
    for tool in ["bash", "zsh", "fish"] {
        assert!(
            have(tool),
            "cannot run: {tool}, to load its completion script (apt-get install {tool})"
        );
    }
    let top = commands(&sprout(&["--help"]));
    assert!(top.contains(&"completions".to_string()));
    let dir = std::env::temp_dir().join(format!("sprout-compl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, shell: &str| {
        let script = sprout(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for c in &top {
            assert!(script.contains(c.as_str()), "{shell} script lacks {c}");
        }
        let path = dir.join(name);
        std::fs::write(&path, script).unwrap();
        path.display().to_string()
    };
    let bash = file("sprout.bash", "bash");
    let zsh = file("_sprout", "zsh");
    let fish = file("sprout.fish", "fish");

    // bash: loads, registers `sprout`, and completes "sprout pu" to "put".
    let out = shell(
        "bash",
        &format!(
            ". '{bash}' && complete -p sprout >/dev/null && \
             COMP_WORDS=(sprout pu) COMP_CWORD=1 COMP_LINE='sprout pu' COMP_POINT=9 && \
             _sprout sprout pu sprout && printf '%s\\n' \"${{COMPREPLY[@]}}\""
        ),
    );
    assert_eq!(out.trim(), "put", "bash completion of 'sprout pu'");
    // zsh: the script parses, and compinit finds its function for `sprout` on $fpath.
    shell("zsh", &format!("zsh -n '{zsh}'"));
    let out = shell(
        "zsh",
        &format!(
            "fpath=('{}' $fpath); autoload -U compinit; compinit -u -d '{}/zcompdump'; \
             print -r -- ${{_comps[sprout]}}",
            dir.display(),
            dir.display()
        ),
    );
    assert_eq!(
        out.trim(),
        "_sprout",
        "zsh: no completion function for sprout"
    );
    // fish: completes every command after "sprout ", and put's options.
    let out = shell("fish", &format!("source '{fish}'; complete -C'sprout '"));
    let offered: Vec<&str> = out.lines().filter_map(|l| l.split('\t').next()).collect();
    for c in &top {
        assert!(
            offered.contains(&c.as_str()),
            "fish does not offer {c}: {out}"
        );
    }
    let out = shell(
        "fish",
        &format!("source '{fish}'; complete -C'sprout put --'"),
    );
    assert!(out.lines().any(|l| l.starts_with("--ttr")), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
