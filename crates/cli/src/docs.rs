//! `sprout completions SHELL` and the hidden `sprout man`: shell completion scripts and
//! the sprout(1) manual page, both made from the clap definitions that `--help` shows.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::Cli;

/// Writes the completion script for `shell` to stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "sprout", &mut out);
    finish(out.flush())
}

/// Writes sprout(1) to stdout.
pub(crate) fn man() -> ExitCode {
    let page = match page() {
        Ok(p) => p,
        Err(e) => return finish(Err(e)),
    };
    let mut out = std::io::stdout().lock();
    finish(out.write_all(&page).and_then(|()| out.flush()))
}

fn finish(r: std::io::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sprout: {e}");
            ExitCode::from(1)
        }
    }
}

/// The page: clap_mangen's sections for the top-level command (name, synopsis,
/// description, global options), a COMMANDS section with each command's synopsis,
/// description and options as its `--help` has them, then the top-level help's notes
/// (environment, exit status) and the version.
fn page() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    let top = clap_mangen::Man::new(cmd.clone()).manual("sprout manual");
    top.render_title(&mut out)?;
    top.render_name_section(&mut out)?;
    top.render_synopsis_section(&mut out)?;
    top.render_description_section(&mut out)?;
    top.render_options_section(&mut out)?;
    let mut notes = Vec::new();
    top.render_extra_section(&mut notes)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    let mut subs = Vec::new();
    collect(&cmd, "sprout", &mut subs);
    for (path, sub) in subs {
        let man = clap_mangen::Man::new(sub.clone());
        out.extend_from_slice(format!(".SS \"{path}\"\n").as_bytes());
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        if sub.get_after_help().is_some() || sub.get_after_long_help().is_some() {
            man.render_extra_section(&mut part)?;
        }
        out.extend_from_slice(&demote(&String::from_utf8_lossy(&part)));
    }
    out.extend_from_slice(
        String::from_utf8_lossy(&notes)
            .replacen(".SH EXTRA", ".SH NOTES", 1)
            .as_bytes(),
    );
    out.extend_from_slice(b".SH SEE ALSO\n\\fBsproutd\\fR(8), \\fBbeanstalkd\\fR(1)\n");
    top.render_version_section(&mut out)?;
    Ok(ascii(&String::from_utf8_lossy(&out)).into_bytes())
}

/// roff input is ASCII: any other character is written as its `\[uXXXX]` escape.
fn ascii(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    for c in roff.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", c as u32));
        }
    }
    out
}

/// Every visible subcommand below `cmd`, depth first, with its full name ("sprout binlog
/// verify"); the global options and `--help` are hidden in them (the page lists them once).
fn collect(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let full = format!("{path} {}", sub.get_name());
        let mut shown = sub.clone().bin_name(&full).display_name(&full);
        let hide: Vec<String> = shown
            .get_arguments()
            .filter(|a| a.is_global_set() || a.get_id() == "help")
            .map(|a| a.get_id().to_string())
            .collect();
        for id in hide {
            shown = shown.mut_arg(id, |a| a.hide(true));
        }
        out.push((full.clone(), shown.clone()));
        collect(&shown, &full, out);
    }
}

/// A command's sections, made part of its subsection: `.SH` headings become bold
/// paragraph labels; the synopsis and options need none.
fn demote(roff: &str) -> Vec<u8> {
    let mut out = String::new();
    for line in roff.lines() {
        match line.strip_prefix(".SH ") {
            Some("SYNOPSIS") | Some("OPTIONS") => {}
            Some("DESCRIPTION") => out.push_str(".PP\n"),
            Some("EXTRA") => out.push_str(".PP\n"),
            Some(heading) => {
                out.push_str(&format!(".PP\n.B {heading}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.into_bytes()
}
