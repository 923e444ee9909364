//! Printers: one for text, one for JSON, chosen once per invocation.
//!
//! Commands hand typed results to a [`Printer`] and never ask which mode is active. Text goes
//! to stdout as tables or `key: value` blocks; JSON goes to stdout as one document per
//! command. Diagnostics never go through a printer: they belong on stderr.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use zomg_sdk::units::format_bytes;
use zomg_sdk::{BaseInfo, BoxInfo, ExecResult, LogOutput, VolumeInfo};

/// How one box delete ended, as `zomg delete` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum DeleteOutcome {
    /// Cleanup finished (or there was no such box).
    Deleted {
        /// The box.
        name: String,
    },
    /// Cleanup was accepted and continues in the background.
    Deleting {
        /// The box.
        name: String,
    },
    /// The delete failed.
    Error {
        /// The box (or the ref as typed, when it did not parse).
        name: String,
        /// Why.
        message: String,
    },
}

impl DeleteOutcome {
    /// Whether this outcome makes the command fail.
    pub fn is_error(&self) -> bool {
        matches!(self, DeleteOutcome::Error { .. })
    }
}

/// Where command results go.
pub trait Printer {
    /// `zomg list`: a table, or names only when `quiet`.
    /// With `qualified`, names are written `project:name` (listing every project).
    fn boxes(&mut self, boxes: &[BoxInfo], quiet: bool, qualified: bool) -> io::Result<()>;
    /// `zomg show`, `create`, `update`: every field of one box.
    fn box_detail(&mut self, b: &BoxInfo) -> io::Result<()>;
    /// `zomg stop`, `resume`: the box's new state.
    fn box_status(&mut self, b: &BoxInfo) -> io::Result<()>;
    /// `zomg delete`: one box's outcome (text prints it at once, JSON at [`Printer::finish`]).
    fn delete_outcome(&mut self, outcome: &DeleteOutcome) -> io::Result<()>;
    /// `zomg base list`.
    fn bases(&mut self, bases: &[BaseInfo]) -> io::Result<()>;
    /// `zomg data list`.
    fn volumes(&mut self, volumes: &[VolumeInfo]) -> io::Result<()>;
    /// `zomg data show`, `data create`: every field of one volume.
    fn volume_detail(&mut self, v: &VolumeInfo) -> io::Result<()>;
    /// `zomg exec --bg`: the started process (text: `pid=<n>`).
    fn background_exec(&mut self, result: &ExecResult) -> io::Result<()>;
    /// `zomg logs` without `--follow` (text: the log as it is).
    fn log_output(&mut self, log: &LogOutput) -> io::Result<()>;
    /// Writes anything buffered; call once at the end.
    fn finish(&mut self) -> io::Result<()>;
}

/// Picks the printer for this invocation.
pub fn printer(json: bool) -> Box<dyn Printer> {
    let out: Box<dyn Write> = Box::new(io::stdout().lock());
    if json {
        Box::new(JsonPrinter::new(out))
    } else {
        Box::new(TextPrinter::new(out))
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Writes rows as left-aligned columns two spaces apart, with no trailing spaces.
pub fn write_table<W: Write + ?Sized>(
    out: &mut W,
    header: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Human-readable output.
pub struct TextPrinter<W: Write> {
    out: W,
}

impl<W: Write> std::fmt::Debug for TextPrinter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextPrinter")
    }
}

impl<W: Write> TextPrinter<W> {
    /// A text printer writing to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// A `key: value` block, values aligned; an empty value prints as `-`.
    fn fields(&mut self, fields: &[(&str, String)]) -> io::Result<()> {
        let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        for (key, value) in fields {
            let key = format!("{key}:");
            writeln!(self.out, "{key:<width$} {}", or_dash(value))?;
        }
        Ok(())
    }
}

/// A volume's size limit as given at create (`10G`), or `-`.
fn size(v: &VolumeInfo) -> String {
    v.size_gb.map_or_else(|| "-".into(), |g| format!("{g}G"))
}

impl<W: Write> Printer for TextPrinter<W> {
    fn boxes(&mut self, boxes: &[BoxInfo], quiet: bool, qualified: bool) -> io::Result<()> {
        let name = |b: &BoxInfo| {
            if qualified {
                format!("{}:{}", b.project, b.name)
            } else {
                b.name.to_string()
            }
        };
        if quiet {
            for b in boxes {
                writeln!(self.out, "{}", name(b))?;
            }
            return Ok(());
        }
        let rows: Vec<Vec<String>> = boxes
            .iter()
            .map(|b| {
                vec![
                    name(b),
                    b.status.to_string(),
                    b.base.clone(),
                    b.url.clone().unwrap_or_else(|| "-".into()),
                    time(&b.created_at),
                ]
            })
            .collect();
        write_table(
            &mut self.out,
            &["NAME", "STATUS", "BASE", "URL", "CREATED"],
            &rows,
        )
    }

    fn box_detail(&mut self, b: &BoxInfo) -> io::Result<()> {
        let status = match &b.status_reason {
            Some(reason) => format!("{} ({reason})", b.status),
            None => b.status.to_string(),
        };
        let tags: Vec<String> = b.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mounts: Vec<String> = b
            .data_mounts
            .iter()
            .map(|m| {
                let mode = if m.read_only { "ro" } else { "rw" };
                format!("{}={}:{mode}", m.name, m.path)
            })
            .collect();
        let mut fields: Vec<(&str, String)> = vec![
            ("name", b.name.to_string()),
            ("project", b.project.to_string()),
            ("status", status),
            ("base", b.base.clone()),
            ("url", b.url.clone().unwrap_or_default()),
            ("port", b.port.map(|p| p.to_string()).unwrap_or_default()),
            ("created_at", time(&b.created_at)),
            ("updated_at", time(&b.updated_at)),
            ("published_domains", b.published_domains.join(", ")),
            ("tags", tags.join(", ")),
            ("data_mounts", mounts.join(", ")),
            ("cpus", b.config.cpus.to_string()),
            ("ram_mb", b.config.ram_mb.to_string()),
            (
                "storage_gb",
                b.config
                    .storage_gb
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
            ),
            (
                "storage_used",
                b.storage_used_bytes.map(format_bytes).unwrap_or_default(),
            ),
        ];
        if let Some(src) = &b.forked_from {
            fields.push(("forked_from", src.clone()));
        }
        self.fields(&fields)
    }

    fn box_status(&mut self, b: &BoxInfo) -> io::Result<()> {
        writeln!(self.out, "{}: {}", b.name, b.status)
    }

    fn delete_outcome(&mut self, outcome: &DeleteOutcome) -> io::Result<()> {
        match outcome {
            DeleteOutcome::Deleted { name } => writeln!(self.out, "{name}: deleted"),
            DeleteOutcome::Deleting { name } => writeln!(self.out, "{name}: deleting"),
            DeleteOutcome::Error { name, message } => {
                writeln!(self.out, "{name}: error: {message}")
            }
        }
    }

    fn bases(&mut self, bases: &[BaseInfo]) -> io::Result<()> {
        let rows: Vec<Vec<String>> = bases
            .iter()
            .map(|b| {
                vec![
                    format!("{}:{}", b.alias, b.tag),
                    time(&b.created_at),
                    b.source.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        write_table(&mut self.out, &["BASE", "CREATED", "SOURCE"], &rows)
    }

    fn volumes(&mut self, volumes: &[VolumeInfo]) -> io::Result<()> {
        let rows: Vec<Vec<String>> = volumes
            .iter()
            .map(|v| {
                vec![
                    v.name.to_string(),
                    size(v),
                    v.used_bytes.map_or_else(|| "-".into(), format_bytes),
                    or_dash(&v.attached_to.join(",")).to_owned(),
                    time(&v.created_at),
                ]
            })
            .collect();
        write_table(
            &mut self.out,
            &["NAME", "SIZE", "USED", "ATTACHED", "CREATED"],
            &rows,
        )
    }

    fn volume_detail(&mut self, v: &VolumeInfo) -> io::Result<()> {
        let fields: Vec<(&str, String)> = vec![
            ("name", v.name.to_string()),
            ("project", v.project.to_string()),
            ("id", v.id.clone()),
            ("size", size(v)),
            ("used", v.used_bytes.map(format_bytes).unwrap_or_default()),
            ("attached_to", v.attached_to.join(", ")),
            ("created_at", time(&v.created_at)),
        ];
        self.fields(&fields)
    }

    fn background_exec(&mut self, result: &ExecResult) -> io::Result<()> {
        match result.pid {
            Some(pid) => writeln!(self.out, "pid={pid}"),
            None => Ok(()),
        }
    }

    fn log_output(&mut self, log: &LogOutput) -> io::Result<()> {
        self.out.write_all(log.output.as_bytes())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Machine-readable output: one JSON document per command.
pub struct JsonPrinter<W: Write> {
    out: W,
    deletes: Vec<DeleteOutcome>,
}

impl<W: Write> std::fmt::Debug for JsonPrinter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonPrinter")
    }
}

impl<W: Write> JsonPrinter<W> {
    /// A JSON printer writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            deletes: Vec::new(),
        }
    }

    fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut self.out, value)?;
        writeln!(self.out)
    }
}

impl<W: Write> Printer for JsonPrinter<W> {
    fn boxes(&mut self, boxes: &[BoxInfo], quiet: bool, _qualified: bool) -> io::Result<()> {
        if quiet {
            let names: Vec<&str> = boxes.iter().map(|b| b.name.as_str()).collect();
            return self.write(&names);
        }
        self.write(boxes)
    }

    fn box_detail(&mut self, b: &BoxInfo) -> io::Result<()> {
        self.write(b)
    }

    fn box_status(&mut self, b: &BoxInfo) -> io::Result<()> {
        self.write(b)
    }

    fn delete_outcome(&mut self, outcome: &DeleteOutcome) -> io::Result<()> {
        self.deletes.push(outcome.clone());
        Ok(())
    }

    fn bases(&mut self, bases: &[BaseInfo]) -> io::Result<()> {
        self.write(bases)
    }

    fn volumes(&mut self, volumes: &[VolumeInfo]) -> io::Result<()> {
        self.write(volumes)
    }

    fn volume_detail(&mut self, v: &VolumeInfo) -> io::Result<()> {
        self.write(v)
    }

    fn background_exec(&mut self, result: &ExecResult) -> io::Result<()> {
        self.write(result)
    }

    fn log_output(&mut self, log: &LogOutput) -> io::Result<()> {
        self.write(log)
    }

    fn finish(&mut self) -> io::Result<()> {
        if !self.deletes.is_empty() {
            let deletes = std::mem::take(&mut self.deletes);
            self.write(&deletes)?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zomg_sdk::{BoxConfig, BoxStatus, DataMount};

    fn sample(name: &str) -> BoxInfo {
        BoxInfo {
            id: format!("b-{name}"),
            name: name.parse().unwrap(),
            project: "default".parse().unwrap(),
            status: BoxStatus::Running,
            status_reason: None,
            base: "box-base:latest".into(),
            url: Some(format!("http://{name}.default.zomg.localhost")),
            port: Some(8080),
            created_at: "2026-11-28T10:00:00Z".parse().unwrap(),
            updated_at: "2026-11-28T10:00:01Z".parse().unwrap(),
            published_domains: vec![],
            tags: [("env".to_owned(), "dev".to_owned())].into(),
            environment: Default::default(),
            data_mounts: vec![DataMount {
                name: "cache".parse().unwrap(),
                path: "/data".into(),
                read_only: true,
            }],
            config: BoxConfig {
                cpus: 0.5,
                ram_mb: 512,
                storage_gb: None,
            },
            termination_grace_period_seconds: 10,
            storage_used_bytes: None,
            forked_from: None,
        }
    }

    fn text(f: impl FnOnce(&mut TextPrinter<&mut Vec<u8>>) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut TextPrinter::new(&mut buf)).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn list_table_and_quiet() {
        let boxes = [sample("web"), sample("db-long-name")];
        assert_eq!(
            text(|p| p.boxes(&boxes, false, false)),
            "\
NAME          STATUS   BASE             URL                                         CREATED
web           running  box-base:latest  http://web.default.zomg.localhost           2026-11-28T10:00:00Z
db-long-name  running  box-base:latest  http://db-long-name.default.zomg.localhost  2026-11-28T10:00:00Z
"
        );
        assert_eq!(
            text(|p| p.boxes(&boxes, true, false)),
            "web\ndb-long-name\n"
        );
        let all = text(|p| p.boxes(&boxes, true, true));
        assert!(
            all.lines().all(|l| l.contains(':')),
            "--all qualifies names: {all}"
        );
        assert_eq!(
            text(|p| p.boxes(&[], false, false)),
            "NAME  STATUS  BASE  URL  CREATED\n"
        );
    }

    #[test]
    fn show_block() {
        assert_eq!(
            text(|p| p.box_detail(&sample("web"))),
            "\
name:              web
project:           default
status:            running
base:              box-base:latest
url:               http://web.default.zomg.localhost
port:              8080
created_at:        2026-11-28T10:00:00Z
updated_at:        2026-11-28T10:00:01Z
published_domains: -
tags:              env=dev
data_mounts:       cache=/data:ro
cpus:              0.5
ram_mb:            512
storage_gb:        -
storage_used:      -
"
        );
    }

    fn volume(name: &str, attached: &[&str]) -> VolumeInfo {
        VolumeInfo {
            id: format!("v-{name}"),
            name: name.parse().unwrap(),
            project: "default".parse().unwrap(),
            size_gb: (name == "data").then_some(10),
            used_bytes: Some(12_897_485),
            attached_to: attached.iter().map(|a| a.to_string()).collect(),
            owner_box: None,
            created_at: "2026-11-28T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn show_prints_storage_used_for_people() {
        let mut b = sample("web");
        b.config.storage_gb = Some(2);
        b.storage_used_bytes = Some(12_897_485);
        let out = text(|p| p.box_detail(&b));
        assert!(
            out.contains("storage_gb:        2\nstorage_used:      12.3 MiB\n"),
            "{out}"
        );
    }

    #[test]
    fn volume_table_and_detail() {
        let vols = [volume("data", &["web", "db"]), volume("cache.v2", &[])];
        assert_eq!(
            text(|p| p.volumes(&vols)),
            "\
NAME      SIZE  USED      ATTACHED  CREATED
data      10G   12.3 MiB  web,db    2026-11-28T10:00:00Z
cache.v2  -     12.3 MiB  -         2026-11-28T10:00:00Z
"
        );
        assert_eq!(
            text(|p| p.volumes(&[])),
            "NAME  SIZE  USED  ATTACHED  CREATED\n"
        );
        assert_eq!(
            text(|p| p.volume_detail(&vols[0])),
            "\
name:        data
project:     default
id:          v-data
size:        10G
used:        12.3 MiB
attached_to: web, db
created_at:  2026-11-28T10:00:00Z
"
        );
        let mut buf = Vec::new();
        JsonPrinter::new(&mut buf).volumes(&vols).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v[0]["name"], "data");
        assert_eq!(v[0]["attached_to"], serde_json::json!(["web", "db"]));
        assert_eq!(v[1]["used_bytes"], 12_897_485);
    }

    #[test]
    fn delete_lines() {
        let out = text(|p| {
            p.delete_outcome(&DeleteOutcome::Deleted { name: "a".into() })?;
            p.delete_outcome(&DeleteOutcome::Deleting { name: "b".into() })?;
            p.delete_outcome(&DeleteOutcome::Error {
                name: "c".into(),
                message: "box is running".into(),
            })
        });
        assert_eq!(out, "a: deleted\nb: deleting\nc: error: box is running\n");
    }

    #[test]
    fn json_deletes_are_one_array() {
        let mut buf = Vec::new();
        let mut p = JsonPrinter::new(&mut buf);
        p.delete_outcome(&DeleteOutcome::Deleted { name: "a".into() })
            .unwrap();
        p.delete_outcome(&DeleteOutcome::Error {
            name: "c".into(),
            message: "box is running".into(),
        })
        .unwrap();
        p.finish().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"name": "a", "status": "deleted"},
                {"name": "c", "status": "error", "message": "box is running"}
            ])
        );
    }

    #[test]
    fn json_box_is_the_wire_object() {
        let mut buf = Vec::new();
        JsonPrinter::new(&mut buf)
            .box_detail(&sample("web"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["name"], "web");
        assert_eq!(v["config"]["ram_mb"], 512);
    }
}
