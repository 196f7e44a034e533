//! rancher/image-mirror's `images-list`: one `SOURCE DESTINATION TAG` per line. That tool
//! never updates a tag in place ("add an entry with the new tag"), so every line is
//! `immutable`.

use super::Translation;
use crate::model::reference::Reference;

pub fn translate(text: &str, to: Option<&str>) -> Translation {
    let mut out = Translation::default();
    if to.is_some() {
        out.errors
            .push("--to: images-list names every destination itself".to_owned());
        return out;
    }
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [source, destination, tag] = fields[..] else {
            out.errors.push(format!(
                "line {}: {line:?}: expected SOURCE DESTINATION TAG",
                n + 1
            ));
            continue;
        };
        let (src, dst) = (format!("{source}:{tag}"), format!("{destination}:{tag}"));
        match (Reference::parse(&src), Reference::parse(&dst)) {
            (Ok(_), Ok(_)) => out
                .lines
                .push(format!("{src} {dst}  # image-mirror: immutable")),
            (Err(e), _) | (_, Err(e)) => out.errors.push(format!("line {}: {line:?}: {e}", n + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_immutable_mappings() {
        let t = translate(
            "# comment\ndocker.io/calico/cni rancher/mirrored-calico-cni v3.22.0\n\nquay.io/cilium/cilium rancher/mirrored-cilium-cilium v1.12.1\nbad line\n",
            None,
        );
        assert_eq!(
            t.lines,
            [
                "docker.io/calico/cni:v3.22.0 rancher/mirrored-calico-cni:v3.22.0  # image-mirror: immutable",
                "quay.io/cilium/cilium:v1.12.1 rancher/mirrored-cilium-cilium:v1.12.1  # image-mirror: immutable"
            ]
        );
        assert_eq!(t.errors.len(), 1);
        assert!(t.errors[0].starts_with("line 5:"), "{:?}", t.errors);
    }
}
