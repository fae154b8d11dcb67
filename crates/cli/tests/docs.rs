//! `sprout man` (sprout(1)) and `sprout completions SHELL`: the page renders without
//! warnings and names every command and every flag that the commands' `--help` shows; the
//! bash script loads in bash and registers a completion for `sprout`; the zsh and fish
//! scripts name every command.

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

#[test]
fn completions_load_and_name_every_command() {
    let top = commands(&sprout(&["--help"]));
    assert!(top.contains(&"completions".to_string()));
    let bash = sprout(&["completions", "bash"]);
    let dir = std::env::temp_dir().join(format!("sprout-compl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sprout.bash");
    std::fs::write(&file, &bash).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {syntax:?}");
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(". '{}' && complete -p sprout", file.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let out = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success() && out.contains("sprout"),
        "complete -p sprout: {loaded:?}"
    );
    for (shell, tool) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let script = sprout(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for c in &top {
            assert!(script.contains(c.as_str()), "{shell} script lacks {c}");
        }
        // Where the shell is installed, it must parse the script too.
        if shell != "bash" && have(tool) {
            let mut child = Command::new(tool)
                .arg("-n")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success(), "{tool} -n");
        }
    }
}
