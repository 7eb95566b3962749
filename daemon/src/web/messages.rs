//! The message catalogue of the web pages: one line per label, Chinese then English.
//! A key missing here shows as `??`, and the test below fails.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The label for `key` in this language.
    pub fn t(self, key: &str) -> &'static str {
        match MESSAGES.iter().find(|(k, _, _)| *k == key) {
            Some((_, zh, en)) => match self {
                Lang::Zh => zh,
                Lang::En => en,
            },
            None => "??",
        }
    }
}

/// (key, 中文, English)
pub(super) static MESSAGES: &[(&str, &str, &str)] = &[
    ("site.name", "乡镇远程会诊", "Township Telemedicine"),
    ("site.clinic", "乡镇远程会诊 · 卫生院", "Township Telemedicine · Clinic"),
    ("site.gateway", "乡镇远程会诊 · 医院", "Township Telemedicine · Hospital"),
    ("nav.home", "首页", "Home"),
    ("nav.logout", "退出", "Log out"),
    ("nav.cases", "会诊", "Cases"),
    ("nav.new_case", "新建会诊", "New consultation"),
    ("nav.import", "导入影像", "Import images"),
    ("nav.worklist", "工作列表", "Worklist"),
    ("nav.links", "链路", "Links"),
    ("nav.alerts", "告警", "Alerts"),
    ("nav.users", "用户", "Users"),
    ("nav.audit", "审计", "Audit"),
    ("role.specialist", "专家", "specialist"),
    ("role.doctor", "医生", "doctor"),
    ("role.admin", "管理员", "administrator"),
    ("err.title", "出错了", "Something went wrong"),
    ("err.csrf", "表单已过期或不是从本站提交的。请返回、刷新页面后重试。", "This form has expired or was not sent from this site. Go back, reload the page and try again."),
    ("err.form", "表单内容无法读取", "The form could not be read"),
    ("err.forbidden", "您的账户无权查看此页面。", "Your account may not see this page."),
    ("login.title", "登录", "Log in"),
    ("login.user", "用户名", "User name"),
    ("login.password", "密码", "Password"),
    ("login.submit", "登录", "Log in"),
    ("login.bad", "用户名或密码错误。", "Wrong user name or password."),
    ("login.locked", "登录失败次数过多，请在 {secs} 秒后重试。", "Too many failed logins; try again in {secs} s."),
    // Consultation states and urgencies.
    ("state.draft", "草稿", "draft"),
    ("state.submitted", "待发送", "waiting to send"),
    ("state.delivered", "已送达医院", "delivered to the hospital"),
    ("state.assigned", "已分配专家", "assigned"),
    ("state.accepted", "审阅中", "in review"),
    ("state.awaiting_answer", "待卫生院回答", "waiting for the clinic's answer"),
    ("state.reported", "报告已出", "report ready"),
    ("state.acknowledged", "已确认", "acknowledged"),
    ("state.cancelled", "已取消", "cancelled"),
    ("ev.created", "创建会诊", "Request created"),
    ("ev.consent", "记录知情同意：{who}，{how}", "Consent recorded: {who}, {how}"),
    ("ev.patient", "更正患者信息", "Patient details corrected"),
    (
        "case.corrected",
        "接诊后患者身份已更正，请核对",
        "Patient's identity corrected after acceptance: check it",
    ),
    ("case.corrected_before", "更正前：", "before:"),
    ("ev.studies", "附加影像 {n} 项、附件 {m} 个", "Attached {n} studies, {m} files"),
    ("ev.submitted", "卫生院已发送", "Sent by the clinic"),
    ("ev.delivered", "医院已收到", "Received by the hospital"),
    ("ev.assigned", "分配给 {who}（{why}）", "Assigned to {who} ({why})"),
    ("ev.accepted", "{who} 接诊", "Accepted by {who}"),
    ("ev.asked", "{who} 提问：{text}", "{who} asked: {text}"),
    ("ev.answered", "卫生院回答：{text}", "The clinic answered: {text}"),
    ("ev.reported", "{who} 签署报告", "Report signed by {who}"),
    ("ev.addendum", "{who} 补充说明：{text}", "Addendum by {who}: {text}"),
    ("ev.acknowledged", "卫生院确认已阅读报告", "The clinic acknowledged the report"),
    ("ev.declined", "{who} 拒绝：{why}", "Declined by {who}: {why}"),
    ("ev.reassigned", "由 {from} 转给 {who}（{why}）", "Reassigned from {from} to {who} ({why})"),
    ("ev.escalated", "由 {from} 升级给 {who}（{why}）", "Escalated from {from} to {who} ({why})"),
    ("ev.cancelled", "已取消：{why}", "Cancelled: {why}"),
    (
        "ev.unrouted",
        "无法自动分配，等待管理员：{why}",
        "Not routed; waits for an administrator: {why}",
    ),
    ("alerts.unrouted", "会诊无法自动分配", "Consultation not routed"),
    ("alerts.pacs", "转发到PACS受阻", "Forwarding to a PACS held up"),
    ("alerts.awaiting", "恢复后等待诊所重新连接", "Waiting for the clinic after a restore"),
    (
        "alerts.roster",
        "排班表无法加载",
        "routing.toml refused (the roster in force, if any, stays)",
    ),
    ("urgency.routine", "常规", "routine"),
    ("urgency.urgent", "加急", "urgent"),
    ("urgency.emergency", "急诊", "emergency"),
    // Shared labels.
    ("case.id", "编号", "Case"),
    ("case.patient", "患者", "Patient"),
    ("case.age_sex", "年龄/性别", "Age/sex"),
    ("case.question", "问题", "Question"),
    ("case.summary", "病情摘要", "Clinical summary"),
    ("case.specialty", "专科", "Specialty"),
    ("case.urgency", "紧急程度", "Urgency"),
    ("case.state", "状态", "State"),
    ("case.clinic", "卫生院", "Clinic"),
    ("case.assignee", "专家", "Specialist"),
    ("case.created", "创建时间", "Created"),
    ("case.consent", "知情同意", "Consent"),
    ("case.consent_none", "尚未记录知情同意", "No consent recorded yet"),
    ("case.timeline", "时间线", "Timeline"),
    ("case.studies", "影像", "Studies"),
    ("case.attachments", "附件", "Attachments"),
    ("case.report", "诊断报告", "Report"),
    ("case.findings", "所见", "Findings"),
    ("case.impression", "印象", "Impression"),
    ("case.recommendation", "建议", "Recommendation"),
    ("case.signed_by", "签署人", "Signed by"),
    ("case.addenda", "补充说明", "Addenda"),
    ("case.questions", "专家提问", "Questions from the specialist"),
    ("case.answer", "回答", "Answer"),
    ("case.none", "暂无会诊。", "No consultations yet."),
    ("case.superseded", "已被取代", "superseded"),
    ("case.print", "打印报告", "Print the report"),
    ("case.prior", "该患者的既往会诊", "Prior consultations of this patient"),
    ("case.images", "查看影像", "View images"),
    ("study.arrived", "已到达", "arrived"),
    ("study.partial", "部分到达", "partly arrived"),
    ("study.waiting", "尚未到达", "not arrived yet"),
    ("study.instance", "幅", "image"),
    ("study.instances", "幅", "images"),
    ("preview.title", "预览（非诊断用）", "Preview — not for diagnosis"),
    ("preview.note", "诊所发出的关键帧缩略图，供完整影像到达前先看；诊断请以原始影像为准。", "Key frames made small by the clinic, to look at before the full images arrive; diagnose on the original images."),
    ("preview.arrived", "本序列已到达 {n} 幅", "{n} images of this series have arrived"),
    ("preview.left", "预计还需 {t}", "about {t} left"),
    ("preview.complete", "完整影像已到达", "the full images have arrived"),
    ("preview.waiting", "预览正在传送", "the preview is on its way"),
    ("act.confirm_incomplete", "尚有影像未到达（已到 {n} 幅）。我确认在全部影像到达前签发，此确认将记入报告。", "Not every image has arrived ({n}). I confirm I sign before the rest arrives; this is recorded in the report."),
    ("report.incomplete", "签发时影像", "Images at signing"),
    ("report.incomplete_note", "签发时仅到达 {n} 幅影像，签发人已确认", "signed when {n} images had arrived, as the signer confirmed"),
    // Clinic pages.
    ("link.online", "在线", "online"),
    ("link.offline_since", "离线，始于", "offline since"),
    ("link.never", "尚未连接", "never connected"),
    ("link.backlog", "待发送", "waiting to send"),
    ("link.routine_capped", "常规影像限速", "routine images limited to"),
    ("link.routine_full", "常规影像全速发送中", "routine images at full rate now"),
    ("link.full_rate_hours", "全速时段", "full rate"),
    ("sync.queued", "排队中", "queued"),
    ("sync.uploading", "上传中", "uploading"),
    ("sync.eta", "约剩 {span}", "about {span} left"),
    ("import.title", "导入影像", "Import images"),
    ("import.help", "选择 DICOM 文件或整个文件夹（光盘、U 盘）。每个文件都会被检查。", "Choose DICOM files or a whole folder (CD, USB stick). Every file is checked."),
    ("import.files", "文件", "Files"),
    ("import.folder", "文件夹", "Folder"),
    ("import.submit", "导入", "Import"),
    ("import.result", "导入结果", "Import results"),
    ("import.stored", "已导入", "imported"),
    ("import.duplicate", "重复", "duplicate"),
    ("import.skipped", "已跳过", "skipped"),
    ("import.quarantined", "已拒收", "rejected"),
    ("import.new_version", "同一图像的新版本", "a new version of an image already held"),
    ("new.title", "新建会诊", "New consultation"),
    ("new.studies", "选择影像（患者信息从 DICOM 读取）", "Choose studies (the patient is filled in from DICOM)"),
    ("new.no_studies", "本机还没有影像。请先导入或从设备发送。", "No studies on this PC yet. Import them or send them from the modality first."),
    ("new.patient_id", "患者 ID", "Patient ID"),
    ("new.patient_name", "患者姓名", "Patient name"),
    ("new.sex", "性别 (M/F/O)", "Sex (M/F/O)"),
    ("new.birth_date", "出生日期 (YYYYMMDD)", "Birth date (YYYYMMDD)"),
    ("new.consent_given_by", "同意人（患者本人或监护人）", "Consent given by (patient or guardian)"),
    ("new.consent_method", "同意方式", "How consent was given"),
    ("new.consent_written", "书面签字", "written, signed"),
    ("new.consent_verbal", "口头，有见证人", "verbal, witnessed"),
    ("new.attachment", "附件（PDF 或 JPEG，可选）", "Attachment (PDF or JPEG, optional)"),
    ("new.submit", "发送会诊", "Send the consultation"),
    ("new.save_draft", "保存草稿", "Save as draft"),
    ("new.required", "必填", "required"),
    ("new.choose_specialty", "请选择专科", "Choose a specialty"),
    ("new.specialty_offline", "尚未收到医院的专科列表（本卫生院还未连上医院）：请按医院的叫法填写专科。", "The hospital's list of specialties has not arrived yet (this clinic has not reached the hospital): type the specialty as the hospital names it."),
    ("new.unknown_specialty", "医院的专科列表中没有此专科，请重新选择。", "The hospital's list has no such specialty; choose again."),
    ("new.need_consent", "发送前必须记录知情同意。", "Consent must be recorded before sending."),
    ("new.need_patient", "请选择影像或填写患者 ID。", "Choose a study or enter the patient ID."),
    ("act.acknowledge", "确认已阅读报告", "Acknowledge the report"),
    ("act.cancel", "取消会诊", "Cancel the consultation"),
    ("act.reason", "原因", "Reason"),
    ("act.submit", "发送", "Send"),
    ("act.consent", "记录知情同意", "Record consent"),
    // Gateway pages.
    ("work.title", "我的工作列表", "My worklist"),
    ("work.in_pool", "组内待领", "waiting in pool"),
    ("work.all", "包括已完成", "include finished"),
    ("work.sla", "接诊时限", "Accept within"),
    ("work.empty", "目前没有分配给您的会诊。", "No cases are routed to you right now."),
    ("work.accept_left", "接诊剩余时间", "Time left to accept"),
    ("work.not_delivered", "尚未送达医院", "not at the hospital yet"),
    ("work.flags", "标记", "Flags"),
    ("work.flag_new", "新", "new"),
    ("work.flag_answer", "已收到回答", "answer received"),
    ("case.number", "病例号", "Case no."),
    ("case.modality", "检查类型", "Modality"),
    ("find.q", "查找", "Find"),
    ("find.q_hint", "姓名、患者ID或病例号", "name, patient id or case no."),
    ("find.from", "创建日期从", "Created from"),
    ("find.to", "创建日期至", "Created to"),
    ("find.any", "全部", "all"),
    ("find.sort", "排序", "Sort by"),
    ("find.sort_default", "默认", "default"),
    ("find.dir", "顺序", "Order"),
    ("find.desc", "降序", "descending"),
    ("find.asc", "升序", "ascending"),
    ("find.submit", "查找", "Search"),
    ("find.clear", "清除条件", "Clear"),
    ("find.limited", "只显示前 {n} 条（共 {total} 条符合），请缩小查找范围。", "Showing the first {n} of {total} matching cases: refine the search."),
    ("find.none", "没有符合条件的会诊。", "No cases match the search."),
    ("act.take", "接收此病例", "Take this case"),
    ("act.take_note", "此病例在 {pool} 组中等待：路由找不到可分配的专家。接收后分配给您，再接诊即可阅片。", "This case waits in pool {pool}: routing found nobody it may give it to. Take it and it is assigned to you; accept it to read it."),
    ("act.accept", "接诊", "Accept"),
    ("act.ask", "向卫生院提问", "Ask the clinic"),
    ("act.report", "签署报告", "Sign the report"),
    ("act.addendum", "补充说明", "Add an addendum"),
    ("act.decline", "拒绝（转给其他专家）", "Decline (route to someone else)"),
    ("act.assign", "分配给", "Assign to"),
    ("act.text", "内容", "Text"),
    ("act.sign_note", "签署后报告不可修改，更正请使用补充说明。", "A signed report cannot be changed; corrections are addenda."),
    ("viewer.title", "影像", "Images"),
    ("viewer.series", "序列", "Series"),
    ("viewer.preset", "窗宽窗位", "Window"),
    ("viewer.preset_default", "默认", "default"),
    ("viewer.preset_lung", "肺窗", "lung"),
    ("viewer.preset_soft", "软组织", "soft tissue"),
    ("viewer.preset_bone", "骨窗", "bone"),
    ("viewer.preset_brain", "脑窗", "brain"),
    ("viewer.help", "拖动调整窗宽窗位，滚轮翻帧，按住 Ctrl 滚动缩放。", "Drag to adjust window/level, scroll for frames, Ctrl+scroll to zoom."),
    ("viewer.none", "该会诊的影像尚未到达。", "No images of this case have arrived yet."),
    ("viewer.cannot", "无法显示该图像", "This image cannot be shown"),
    ("pacs.title", "医院 PACS 转发", "Forwarding to the hospital PACS"),
    ("pacs.destination", "目的地", "Destination"),
    ("pacs.queued", "待发送", "Queued"),
    ("pacs.sent", "已存入", "Stored"),
    ("pacs.failures", "失败次数", "Failed attempts"),
    ("pacs.last_error", "最近错误", "Last error"),
    ("pacs.echo_failed", "无应答", "no answer"),
    ("links.title", "各卫生院链路", "Clinic links"),
    ("links.rtt", "往返时延", "RTT"),
    ("links.loss", "丢包", "Loss"),
    ("links.throughput", "吞吐", "Throughput"),
    ("links.backlog", "积压", "Backlog"),
    ("links.oldest", "最早待发", "Oldest pending"),
    ("links.oldest_emergency", "最早待发急诊", "Oldest emergency"),
    ("links.last_sync", "最近同步", "Last sync"),
    ("links.version", "版本", "Version"),
    ("links.cert", "证书到期", "Certificate expires"),
    ("links.days_left", "剩 {n} 天", "{n} days left"),
    ("links.history", "24 小时历史", "Last 24 hours"),
    ("links.none", "尚无卫生院连接过。", "No clinic has connected yet."),
    ("alerts.title", "告警", "Alerts"),
    ("alerts.none", "没有告警。", "No alerts."),
    ("alerts.link_down", "链路中断", "Link down"),
    ("alerts.backlog_age", "积压超时", "Backlog too old"),
    ("alerts.sla", "会诊超时", "Consultation SLA breached"),
    ("alerts.cert", "证书即将到期", "Certificate expiring"),
    ("alerts.disk", "磁盘空间不足", "Disk nearly full"),
    ("alerts.quarantine", "有被拒收的文件", "Files quarantined"),
    (
        "alerts.crl_refused",
        "吊销列表更新被拒绝，仍使用原列表",
        "Changed CRL refused; the one in force stays",
    ),
    (
        "alerts.crl_stale",
        "吊销列表已过期，请重新签发",
        "CRL past its next update; publish a fresh one",
    ),
    ("users.title", "用户", "Users"),
    ("users.add", "添加用户", "Add a user"),
    ("users.name", "登录名", "Login"),
    ("users.display", "姓名", "Name"),
    ("users.role", "角色", "Role"),
    ("users.specialist_id", "专家编号 (routing.toml)", "Specialist id (routing.toml)"),
    ("users.qualification", "职称", "Qualification"),
    ("users.password", "密码（至少 10 位）", "Password (10 characters or more)"),
    ("users.reset", "重设密码", "Reset password"),
    ("users.deactivate", "停用", "Deactivate"),
    ("users.reactivate", "重新启用", "Reactivate"),
    ("users.inactive", "已停用", "deactivated"),
    ("users.saved", "已保存。", "Saved."),
    ("audit.title", "审计日志", "Audit log"),
    ("audit.when", "时间", "When"),
    ("audit.who", "用户", "Who"),
    ("audit.from", "来源地址", "From"),
    ("audit.action", "操作", "Action"),
    ("audit.target", "对象", "Target"),
    ("audit.filter", "筛选", "Filter"),
    ("audit.chain_ok", "哈希链完整。", "The hash chain is intact."),
    ("audit.chain_bad", "哈希链已损坏：", "The hash chain is broken: "),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the pages of either daemon use is in the catalogue, once.
    #[test]
    fn every_key_used_by_a_page_has_both_languages() {
        let mut keys: Vec<&str> = MESSAGES.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len(), "a key is listed twice");
        for (k, zh, en) in MESSAGES {
            assert!(!zh.is_empty() && !en.is_empty(), "{k} lacks a language");
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut missing = Vec::new();
        for dir in ["daemon/src", "gateway/src", "clinic-agent/src"] {
            for entry in walk(&root.join(dir)) {
                let text = std::fs::read_to_string(&entry).unwrap_or_default();
                for (at, _) in text.match_indices("t(\"") {
                    // A call of `t`, not of `next` or another name ending in t.
                    let before = text[..at].chars().next_back();
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    let piece = &text[at + 3..];
                    let Some(end) = piece.find('"') else { continue };
                    let key = &piece[..end];
                    if key.contains('.') && !key.contains(' ') && Lang::Zh.t(key) == "??" {
                        missing.push(format!("{}: {key}", entry.display()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys missing from the catalogue: {missing:?}"
        );
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
        out
    }
}
