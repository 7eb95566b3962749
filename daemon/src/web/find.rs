//! What both sites' worklists share for finding cases: the search form above the table (a
//! plain GET form, so it works without the script), the note when a list is cut short, and
//! the case number shown beside the long id. The matching itself is `proto::find`.

use maud::{html, Markup};
use proto::consult::{State, Urgency};
use proto::find::Search;

use super::consult::{state_key, urgency_key};
use super::Lang;

/// Rows a worklist page shows at most; a search narrows the rest.
pub const SHOWN: usize = 200;

/// What a worklist's form offers beyond the common fields.
pub struct Choices<'a> {
    /// Where the form goes (`/worklist`, `/`).
    pub action: &'a str,
    /// Clinics to filter by (the hospital's worklist); empty: no clinic field.
    pub clinics: &'a [String],
    /// Specialties to filter by: the value the request names, and how it reads.
    pub specialties: &'a [(String, String)],
    /// Fields the form keeps as they are (the hospital's `all`).
    pub keep: &'a [(&'a str, &'a str)],
}

fn selected(search: &Option<String>, value: &str) -> bool {
    search.as_deref().map(str::trim) == Some(value)
}

/// The search form: free text, created from/to, urgency, state, clinic, specialty, sort.
pub fn search_form(lang: Lang, search: &Search, choices: &Choices<'_>) -> Markup {
    let any = lang.t("find.any");
    html! {
        form.search.noprint #find method="get" action=(choices.action) role="search" {
            @for (name, value) in choices.keep { input type="hidden" name=(name) value=(value); }
            label.wide { (lang.t("find.q"))
                input #q type="search" name="q" value=(search.q.as_deref().unwrap_or_default())
                    placeholder=(lang.t("find.q_hint")) autocomplete="off";
            }
            label { (lang.t("find.from"))
                input type="date" name="from" value=(search.from.as_deref().unwrap_or_default());
            }
            label { (lang.t("find.to"))
                input type="date" name="to" value=(search.to.as_deref().unwrap_or_default());
            }
            label { (lang.t("case.urgency"))
                select name="urgency" {
                    option value="" { (any) }
                    @for u in Urgency::ALL {
                        option value=(u.label()) selected[selected(&search.urgency, u.label())] { (lang.t(urgency_key(u))) }
                    }
                }
            }
            label { (lang.t("case.state"))
                select name="state" {
                    option value="" { (any) }
                    @for s in State::ALL {
                        option value=(s.label()) selected[selected(&search.state, s.label())] { (lang.t(state_key(s))) }
                    }
                }
            }
            @if !choices.clinics.is_empty() {
                label { (lang.t("case.clinic"))
                    select name="clinic" {
                        option value="" { (any) }
                        @for c in choices.clinics {
                            option value=(c) selected[selected(&search.clinic, c)] { (c) }
                        }
                    }
                }
            }
            @if !choices.specialties.is_empty() {
                label { (lang.t("case.specialty"))
                    select name="specialty" {
                        option value="" { (any) }
                        @for (value, shown) in choices.specialties {
                            option value=(value) selected[selected(&search.specialty, value)] { (shown) }
                        }
                    }
                }
            }
            label { (lang.t("find.sort"))
                select name="sort" {
                    option value="" { (lang.t("find.sort_default")) }
                    @for (value, key) in [("created", "case.created"), ("urgency", "case.urgency"), ("state", "case.state")] {
                        option value=(value) selected[selected(&search.sort, value)] { (lang.t(key)) }
                    }
                }
            }
            label { (lang.t("find.dir"))
                select name="dir" {
                    option value="" { (lang.t("find.sort_default")) }
                    option value="desc" selected[selected(&search.dir, "desc")] { (lang.t("find.desc")) }
                    option value="asc" selected[selected(&search.dir, "asc")] { (lang.t("find.asc")) }
                }
            }
            div.buttons {
                button #find-submit type="submit" { (lang.t("find.submit")) }
                " "
                a href=(clear_link(choices)) { (lang.t("find.clear")) }
            }
        }
    }
}

fn clear_link(choices: &Choices<'_>) -> String {
    let kept: Vec<String> = choices
        .keep
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if kept.is_empty() {
        choices.action.to_owned()
    } else {
        format!("{}?{}", choices.action, kept.join("&"))
    }
}

/// Says that only the first rows are shown, when more matched.
pub fn limited_note(lang: Lang, shown: usize, matched: usize) -> Markup {
    html! {
        @if matched > shown {
            p.warn #limited {
                (lang.t("find.limited").replace("{n}", &shown.to_string()).replace("{total}", &matched.to_string()))
            }
        }
    }
}

/// A case's short number for a table cell or a heading; a dash for a case without one.
pub fn case_number(number: Option<&str>) -> Markup {
    html! {
        @match number {
            Some(n) => { span.case-no { (n) } }
            None => { span.muted { "—" } }
        }
    }
}

/// The patient's DICOM name (`Family^Given`) as people read it.
pub fn patient_name(name: &str) -> String {
    name.split('^')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_dicom_name_reads_with_spaces() {
        assert_eq!(patient_name("Wang^Xiaoming"), "Wang Xiaoming");
        assert_eq!(patient_name("Wang^^^"), "Wang");
        assert_eq!(patient_name("王小明"), "王小明");
    }

    #[test]
    fn the_form_keeps_what_was_asked_and_the_hidden_fields() {
        let search = Search {
            q: Some("wang".into()),
            state: Some("assigned".into()),
            ..Search::default()
        };
        let clinics = vec!["jinzhou".to_owned()];
        let form = search_form(
            Lang::En,
            &search,
            &Choices {
                action: "/worklist",
                clinics: &clinics,
                specialties: &[],
                keep: &[("all", "1")],
            },
        )
        .into_string();
        assert!(form.contains(r#"name="q" value="wang""#), "{form}");
        assert!(form.contains(r#"value="assigned" selected"#), "{form}");
        assert!(
            form.contains(r#"<input type="hidden" name="all" value="1">"#),
            "{form}"
        );
        assert!(form.contains(r#"href="/worklist?all=1""#), "{form}");
        assert!(
            !form.contains("??"),
            "every label is in the catalogue: {form}"
        );
    }
}
