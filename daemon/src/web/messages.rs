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
        self.find(key).unwrap_or("??")
    }

    /// The label for `key`, if there is one.
    pub fn find(self, key: &str) -> Option<&'static str> {
        MESSAGES
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, zh, en)| match self {
                Lang::Zh => *zh,
                Lang::En => *en,
            })
    }

    /// An audit log action (`login_failed`, `refused_report`, …) in words; one this version
    /// has no words for is shown as it is recorded.
    pub fn audit_action(self, action: &str) -> String {
        if let Some(words) = self.find(&format!("log.{action}")) {
            return words.to_owned();
        }
        match action.strip_prefix("refused_") {
            Some(what) => format!(
                "{}: {}",
                self.t("log.refused"),
                self.find(&format!("log.{what}")).unwrap_or(what)
            ),
            None => action.to_owned(),
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
    ("log.login", "登录", "Logged in"),
    ("log.login_failed", "登录失败", "Failed login"),
    ("log.login_locked", "账户暂时锁定（多次登录失败）", "Locked out after failed logins"),
    ("log.login_deactivated", "已停用账户尝试登录", "Login to a deactivated account"),
    ("log.logout", "退出登录", "Logged out"),
    ("log.reauth", "签署前确认密码", "Password confirmed to sign"),
    ("log.reauth_failed", "签署前密码错误", "Wrong password when signing"),
    ("log.refused", "拒绝访问", "Refused"),
    ("log.view", "查看病例", "Viewed a case"),
    ("log.view_worklist", "查看工作列表", "Viewed the worklist"),
    ("log.view_images", "打开阅片器", "Opened the viewer"),
    ("log.view_image", "查看影像", "Viewed an image"),
    ("log.view_prior", "查看既往病例", "Viewed prior cases"),
    ("log.view_studies", "查看检查列表", "Viewed a clinic's studies"),
    ("log.view_attachment", "查看附件", "Viewed an attachment"),
    ("log.accept", "接诊", "Accepted"),
    ("log.take", "从组内领取", "Took from the pool"),
    ("log.ask", "向卫生院提问", "Asked the clinic"),
    ("log.report", "签署报告", "Signed the report"),
    ("log.addendum", "补充说明", "Added an addendum"),
    ("log.decline", "退回", "Declined"),
    ("log.assign", "指派", "Assigned"),
    ("log.user_add", "新增账户", "Added an account"),
    ("log.user_reset", "重置密码", "Reset a password"),
    ("log.user_deactivate", "停用账户", "Deactivated an account"),
    ("log.user_reactivate", "恢复账户", "Reactivated an account"),
    ("log.backup", "备份", "Backup"),
    ("status.400", "请求有误", "Bad Request"),
    ("status.401", "需要登录", "Unauthorized"),
    ("status.403", "无权访问", "Forbidden"),
    ("status.404", "未找到", "Not Found"),
    ("status.409", "与当前状态冲突", "Conflict"),
    ("status.413", "内容过大", "Payload Too Large"),
    ("status.422", "无法处理", "Unprocessable Entity"),
    ("status.429", "尝试过于频繁", "Too Many Requests"),
    ("status.500", "服务器内部错误", "Internal Server Error"),
    ("status.503", "服务暂不可用", "Service Unavailable"),
    ("log.user_edit", "修改账户信息", "Changed an account's details"),
    ("log.role_change", "更改角色", "Changed a role"),
    ("users.edit", "修改", "Edit"),
    ("users.save", "保存", "Save"),
    ("log.alert_ack", "确认告警", "Acknowledged an alert"),
    ("log.roster_change", "修改排班与分组", "Changed the routing roster"),
    ("nav.set_aside", "待核对文件", "Set aside"),
    ("aside.title", "被搁置的文件", "Files set aside"),
    ("aside.help", "代理不能直接发送的文件都保存在这里，不会丢失。缺少患者 ID 的检查可以在此指定患者，之后即自动发送；原始文件保持不变。", "Files the agent could not send as they were are kept here, never lost. A study without a patient id can be given its patient here and is then sent; the original file stays as it was."),
    ("aside.needs_patient", "缺少患者 ID", "No patient id"),
    ("aside.assign", "指定患者并发送", "Give it this patient and send it"),
    ("aside.assign_note", "更改会写入影像的修改记录（原始属性序列），并记录操作人。", "The change is written into the images' own history (Original Attributes Sequence), with who made it."),
    ("aside.none", "没有被搁置的文件。", "No files are set aside."),
    ("aside.when", "时间", "When"),
    ("aside.file", "文件", "File"),
    ("aside.study", "检查", "Study"),
    ("aside.reason", "原因", "Reason"),
    ("aside.state", "状态", "State"),
    ("aside.reconciled", "已指定患者", "Given patient"),
    ("aside.kept", "保留", "Kept"),
    ("nav.worklist", "工作列表", "Worklist"),
    ("nav.links", "链路", "Links"),
    ("nav.alerts", "告警", "Alerts"),
    ("nav.users", "用户", "Users"),
    ("nav.audit", "审计", "Audit"),
    ("nav.roster", "排班", "Roster"),
    ("roster.title", "专家排班与分组", "Specialists, pools and duty"),
    ("roster.none", "本网关未配置会诊分配（gateway.toml 中没有 [routing]）。", "This gateway routes no consultations ([routing] is not set in gateway.toml)."),
    ("roster.refused", "排班文件有误，请先修正：", "The roster file is refused; fix it first:"),
    ("roster.help", "在此修改会写回排班文件（保留注释），保存前按与文件相同的规则检查；分配程序在下次检查时使用新排班。值班时间写法如 mon-fri 08:00-17:00，多个时段用分号隔开。", "Changes here are written back to the roster file (comments kept) after the same checks as the file; the router uses them at its next check. Duty hours read like mon-fri 08:00-17:00; separate several with semicolons."),
    ("roster.specialists", "专家", "Specialists"),
    ("roster.id", "编号", "Id"),
    ("roster.specialties", "专科", "Specialties"),
    ("roster.on_duty", "当前值班", "On duty now"),
    ("roster.yes", "是", "yes"),
    ("roster.no", "否", "no"),
    ("roster.duty", "值班时间", "Duty hours"),
    ("roster.save", "保存", "Save"),
    ("roster.pools", "分组", "Pools"),
    ("roster.pool", "分组", "Pool"),
    ("roster.lead", "组长", "Lead"),
    ("roster.members", "成员", "Members"),
    ("roster.add", "加入分组", "Add to pool"),
    ("roster.remove", "移出", "Remove"),
    ("roster.saved", "已保存到排班文件。", "Saved to the roster file."),
    ("roster.file", "排班文件：", "Roster file:"),
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
    ("case.open_ohif", "在 OHIF 中打开", "Open in OHIF"),
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
    ("act.confirm_cancel", "确定取消此会诊吗？取消后医院不再处理。", "Cancel this consultation? The hospital will no longer work on it."),
    ("users.confirm_deactivate", "确定停用账户 {name} 吗？其会话立即失效；之后可以恢复。", "Deactivate {name}? Their sessions end now; the account can be reactivated later."),
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
    ("report.template", "报告模板", "Report template"),
    ("report.use_template", "使用模板", "Use the template"),
    ("report.draft_note", "输入的内容会自动保存为草稿（仅您本人可见），刷新或重启后仍在。", "What you type is kept as a draft (yours alone), through a refresh or a restart."),
    ("report.draft_saved", "草稿已保存", "Draft saved"),
    ("report.preview", "预览并签署…", "Preview and sign…"),
    ("report.preview_title", "签署前预览报告", "The report before signing"),
    ("report.preview_note", "报告签署后即发送给卫生院，不能撤回，只能追加补充说明。请核对后输入您的密码签署。", "Once signed, the report goes to the clinic and cannot be withdrawn, only amended by an addendum. Check it, then give your password to sign."),
    ("report.password", "您的密码", "Your password"),
    ("report.edit", "返回修改", "Back to editing"),
    ("report.bad_password", "密码不正确，报告未签署；草稿已保留。", "Wrong password: the report is not signed; the draft is kept."),
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
    ("viewer.help", "滚轮、方向键、PageUp/PageDown、Home/End 或滑块翻层；左键拖动调整窗宽窗位；右键拖动平移；Ctrl+滚轮或 +/− 缩放；F 全屏。平板：单指上下滑动翻层，双指缩放。", "Wheel, arrow keys, PageUp/PageDown, Home/End or the slider step through slices; left-drag sets window/level; right-drag pans; Ctrl+wheel or +/− zooms; F for full screen. On a tablet: swipe up or down for slices, pinch to zoom."),
    ("viewer.ecg_help", "标准 12 导联：3 行 × 4 列，每导联 2.5 秒，下方为 II 导联节律条；小格 1 mm，大格 5 mm；每行起始为 1 mV 定标脉冲。", "Standard 12-lead layout: 3 rows × 4 columns of 2.5 s per lead and a lead II rhythm strip below; small squares 1 mm, large 5 mm; each row starts with a 1 mV calibration pulse."),
    ("viewer.ecg", "心电图", "ECG"),
    ("viewer.instances", "幅图像", "images"),
    ("viewer.instance", "幅图像", "image"),
    ("viewer.waveform", "份波形", "waveform"),
    ("viewer.waveforms", "份波形", "waveforms"),
    ("viewer.slice", "层面", "Slice"),
    ("viewer.position", "位置", "Pos"),
    ("viewer.gain", "增益", "Gain"),
    ("viewer.speed", "走纸速度", "Speed"),
    ("viewer.zoom_in", "放大", "Zoom in"),
    ("viewer.zoom_out", "缩小", "Zoom out"),
    ("viewer.zoom_reset", "复位", "Reset"),
    ("viewer.fullscreen", "全屏", "Full screen"),
    ("viewer.fit", "适应宽度 / 实际大小", "Fit width / true size"),
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
    ("links.history_note", "每分钟一个点（吞吐为该分钟平均值），自 {since} 起；横轴为本站时间，右端为现在。", "One point a minute (throughput: the minute's mean), since {since}; the time axis is in the site's time, now at the right."),
    ("links.max", "最大", "max"),
    ("links.now", "现在", "now"),
    ("links.backlog_items", "积压（项）", "Backlog (items)"),
    ("links.none", "尚无卫生院连接过。", "No clinic has connected yet."),
    ("alerts.title", "告警", "Alerts"),
    ("alerts.none", "没有告警。", "No alerts."),
    ("alerts.kind", "类型", "Kind"),
    ("alerts.about", "对象", "About"),
    ("alerts.detail", "详情", "Detail"),
    ("alerts.raised", "首次告警", "Raised at"),
    ("alerts.action", "处理", "Action"),
    ("alerts.acknowledge", "确认", "Acknowledge"),
    ("alerts.acknowledged_by", "{who} 已确认", "Acknowledged by {who}"),
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
    ("users.specialist_id", "专家编号（见排班页）", "Specialist id (as on the roster page)"),
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

#[cfg(test)]
mod audit_words {
    use super::*;

    #[test]
    fn audit_actions_read_as_words_in_both_languages() {
        assert_eq!(Lang::Zh.audit_action("login_failed"), "登录失败");
        assert_eq!(
            Lang::En.audit_action("refused_report"),
            "Refused: Signed the report"
        );
        assert_eq!(Lang::Zh.audit_action("refused_view"), "拒绝访问: 查看病例");
        assert_eq!(Lang::En.audit_action("something_new"), "something_new");
        // Every key has both languages.
        for (key, zh, en) in MESSAGES {
            assert!(!zh.is_empty() && !en.is_empty(), "{key}");
        }
    }
}
