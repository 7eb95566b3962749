//! What the daemons say in sentences (refusals, import rejections, routing explanations,
//! alerts), in Chinese: each page passes a server sentence through [`Lang::say`] before showing
//! it. A sentence is matched against English templates whose `{}` stand for the names, ids
//! and numbers it carries (themselves said again, so a reason inside a reason is translated
//! too); parts joined by " · " are said one by one. A sentence no template knows is shown as
//! it is: the Chinese-page test (`tests/browser.rs`) fails on it.

use super::messages::Lang;

/// (English template, Chinese template), most specific first.
static SENTENCES: &[(&str, &str)] = &[
    // The consultation's own rules (proto::consult::Refusal).
    ("a {} event is appended by the {} side only", "{}事件只能由{}一方添加"),
    ("the consultation must start with a created event", "会诊必须从创建开始"),
    ("the consultation was already created", "会诊已经创建"),
    (
        "the patient's consent is not recorded: record who gave it, how and when before sending the request",
        "尚未记录患者知情同意：发送前请记录同意人、同意方式和时间",
    ),
    ("the consultation is {}; a {} event does not apply now", "会诊当前为“{}”状态，现在不能执行“{}”"),
    (
        "only the assigned specialist ({}) may do this; {} is not assigned",
        "只有被指派的专家（{}）可以执行此操作；{} 不是被指派的专家",
    ),
    ("{} already declined this consultation; it must go to someone else", "{} 已退回此会诊，须交给其他专家"),
    ("no open question {} to answer", "没有待回答的问题 {}"),
    ("a {} field is empty", "“{}”为空"),
    (
        "a signed report stands: the case cannot be cancelled once reported (a cancel that crossed the report on the link is kept, set aside)",
        "报告已签署：出具报告后病例不能取消（与报告在链路上交错的取消会被保留并搁置）",
    ),
    (
        "a specialist has accepted this case: changing who the patient is is a correction — give its reason, and the specialist is shown it",
        "专家已接诊：更改患者身份属于更正——请说明原因，专家会看到此更正",
    ),
    // The case services and the pages.
    ("no consultation {}", "没有会诊 {}"),
    ("no image {} in this case", "此病例中没有影像 {}"),
    ("no attachment {} on {}", "会诊 {1} 没有附件 {0}"),
    ("no action {}", "没有操作 {}"),
    ("no form {}", "没有表单 {}"),
    ("no user {}", "没有用户 {}"),
    ("patient is required", "须填写患者"),
    ("study_instance_uids is required", "须选择检查"),
    ("{} is required", "须填写“{}”"),
    ("only administrators assign", "只有管理员可以指派"),
    ("only administrators {}", "只有管理员可以{}"),
    ("manage accounts", "管理账户"),
    ("read the audit log", "查看审计日志"),
    ("see the link board", "查看链路看板"),
    ("see the alerts", "查看告警"),
    ("only specialists do this", "只有专家可以执行此操作"),
    (
        "an administrator cannot change their own role; ask another administrator",
        "管理员不能更改自己的角色，请另一位管理员操作",
    ),
    (
        "an administrator cannot deactivate their own account; ask another administrator",
        "管理员不能停用自己的账户，请另一位管理员操作",
    ),
    ("a qualification is needed to sign", "签署报告须有执业资格记录"),
    (
        "{} is not linked to a specialist in routing.toml; only specialists do this",
        "{} 未与 routing.toml 中的专家关联；只有专家可以执行此操作",
    ),
    (
        "{} has no qualification on record; an administrator sets it with `gateway user add --replace --qualification`",
        "{} 没有执业资格记录；管理员可用 `gateway user add --replace --qualification` 设置",
    ),
    // Files refused at the door (store::dicom::InvalidDicom).
    (
        "missing Patient ID (0010,0020); the modality or exporting tool must fill it in",
        "缺少患者 ID (0010,0020)：请在“待核对文件”页面为该检查指定患者",
    ),
    ("missing {} {}; the modality or exporting tool must fill it in", "缺少 {} {}；须由设备或导出工具填写"),
    (
        "not a DICOM Part 10 file ({}); export it from the modality as DICOM, with a file meta header",
        "不是 DICOM 文件（{}）；请从设备按 DICOM 格式（含文件头）导出",
    ),
    ("malformed DICOM: {}", "DICOM 文件格式错误：{}"),
    ("too short for a DICOM Part 10 file", "文件太短"),
    ("no DICM prefix after the 128-byte preamble", "128 字节前导区之后没有 DICM 标记"),
    (
        "a DICOMDIR (a CD/USB index), not an image; import the folder that holds it instead",
        "这是 DICOMDIR（光盘/U 盘目录），不是影像；请导入包含它的文件夹",
    ),
    (
        "file meta header says SOP Instance UID {} but the data set says {}; the file is inconsistent",
        "文件头中的 SOP 实例 UID 为 {}，数据集中却为 {}；文件前后不一致",
    ),
    // Routing (gateway::routing): its errors and the explanations on the timeline.
    (
        "specialty '{}' is not in the roster: no rule may guess who reads it; add it (or the name the clinic used) under [[specialty]] in routing.toml, or assign the case by hand",
        "专科“{}”不在排班表中，不能猜测由谁阅片：请在 routing.toml 的 [[specialty]] 中加入它（或卫生院使用的名称），或手动指派此病例",
    ),
    (
        "no routing rule matches specialty '{}', urgency {}, clinic {}; add a rule for it to routing.toml, with a pool that reads it",
        "没有路由规则匹配专科“{}”、紧急程度 {}、卫生院 {}；请在 routing.toml 中为其添加规则，并指定能阅此专科的组",
    ),
    (
        "rule {}: nobody in pool {} can take it (members off duty or excluded, and the lead {} excluded); an administrator must assign it",
        "规则 {}：组 {} 中无人可接（成员不在班或已排除，组长 {} 也已排除）；须由管理员指派",
    ),
    (
        "rule {} → pool {}; on duty and not excluded: {}; chose {}: fewest open cases{}",
        "规则 {} → 组 {}；在班且未排除：{}；选择 {}：未结病例最少{}",
    ),
    (", idle longest among the tied", "，并列者中空闲最久"),
    (
        "rule {} → pool {}; nobody on duty and not excluded; fell back to the pool's lead {}",
        "规则 {} → 组 {}；无人在班或均已排除；改派给组长 {}",
    ),
    ("not accepted within {} min; {}", "{} 分钟内未接诊；{}"),
    (
        "pool {}: nobody on duty; a {} consultation went to the lead {}",
        "组 {}：无人在班；一个{}会诊已交给组长 {}",
    ),
    // Alerts (gateway::alerts).
    (
        "restored from a backup: its cases wait until its link is back",
        "已从备份恢复：其病例等待链路恢复",
    ),
    (
        "certs crl --dir CA_FOLDER, then copy crl.pem to the gateway",
        "运行 certs crl --dir CA_FOLDER，再把 crl.pem 复制到网关",
    ),
    ("{} queued", "{} 个待发送"),
    ("{} min", "{} 分钟"),
];

/// Whether `text` has the form of `template`, and what its `{}` stand for.
fn captures<'t>(template: &str, text: &'t str) -> Option<Vec<&'t str>> {
    let parts: Vec<&str> = template.split("{}").collect();
    let mut rest = text.strip_prefix(parts[0])?;
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate().skip(1) {
        let last = i == parts.len() - 1;
        let at = if last {
            if !rest.ends_with(part) {
                return None;
            }
            rest.len() - part.len()
        } else {
            rest.find(part)?
        };
        out.push(&rest[..at]);
        rest = &rest[at + part.len()..];
    }
    (rest.is_empty() || parts.len() == 1).then_some(out)
}

/// `template` with its `{}` (or `{0}`, `{1}`, … when the order changes) filled from `values`.
fn fill(template: &str, values: &[String]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        let n = if inner.is_empty() {
            next += 1;
            next - 1
        } else {
            inner.parse().unwrap_or(usize::MAX)
        };
        out.push_str(values.get(n).map_or("", String::as_str));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

impl Lang {
    /// A sentence a daemon wrote, in this language (English as it is).
    pub fn say(self, text: &str) -> String {
        match self {
            Lang::En => text.to_owned(),
            Lang::Zh => say_zh(text, 0),
        }
    }
}

fn say_zh(text: &str, depth: u32) -> String {
    if depth > 4 || text.is_empty() {
        return text.to_owned();
    }
    if text.contains(" · ") {
        return text
            .split(" · ")
            .map(|part| say_zh(part, depth + 1))
            .collect::<Vec<_>>()
            .join(" · ");
    }
    for (en, zh) in SENTENCES {
        if let Some(values) = captures(en, text) {
            let said: Vec<String> = values.iter().map(|v| say_zh(v, depth + 1)).collect();
            return fill(zh, &said);
        }
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_said_in_chinese_with_what_they_carry() {
        let zh = Lang::Zh;
        assert_eq!(zh.say("no consultation 01ABC"), "没有会诊 01ABC");
        assert_eq!(
            zh.say("jinzhou · specialty '神经内科' is not in the roster: no rule may guess who reads it; add it (or the name the clinic used) under [[specialty]] in routing.toml, or assign the case by hand"),
            "jinzhou · 专科“神经内科”不在排班表中，不能猜测由谁阅片：请在 routing.toml 的 [[specialty]] 中加入它（或卫生院使用的名称），或手动指派此病例"
        );
        // A reason inside a reason, and a tail said on its own.
        assert_eq!(
            zh.say("not accepted within 15 min; rule r → pool p; on duty and not excluded: li (0 open); chose li: fewest open cases, idle longest among the tied"),
            "15 分钟内未接诊；规则 r → 组 p；在班且未排除：li (0 open)；选择 li：未结病例最少，并列者中空闲最久"
        );
        // The order of what it carries may change.
        assert_eq!(zh.say("no attachment X on C"), "会诊 C 没有附件 X");
        // The more specific template wins.
        assert!(zh
            .say("missing Patient ID (0010,0020); the modality or exporting tool must fill it in")
            .contains("待核对文件"));
        // Unknown sentences, and English pages, are left as they are.
        assert_eq!(zh.say("something else entirely"), "something else entirely");
        assert_eq!(
            Lang::En.say("no consultation 01ABC"),
            "no consultation 01ABC"
        );
    }

    #[test]
    fn every_template_fills_all_it_matches() {
        for (en, zh) in SENTENCES {
            let holes = en.matches("{}").count();
            let filled = zh.matches('{').count();
            assert_eq!(holes, filled, "{en}");
            assert!(
                !en.contains("{}{}"),
                "two holes side by side cannot be told apart: {en}"
            );
        }
    }
}
