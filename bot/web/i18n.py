"""The dashboard's words in English and Chinese (`dashboard.language`); templates call t("key")."""

from __future__ import annotations

from typing import Callable

STRINGS: dict[str, tuple[str, str]] = {  # key: (en, zh)
    "app": ("moodbot supervisor", "moodbot 主管面板"),
    "overview": ("Overview", "总览"),
    "alerts": ("Alerts", "警报"),
    "logout": ("Log out", "退出"),
    "login": ("Log in", "登录"),
    "your_name": ("Your name", "你的名字"),
    "password": ("Password", "密码"),
    "login_failed": ("Wrong name or password.", "名字或密码错误。"),
    "login_limited": ("Too many failed logins. Try again in {s} s.", "登录失败次数过多，请 {s} 秒后再试。"),
    "session_over": ("Please log in.", "请登录。"),
    "today": ("Today's messages", "今日消息"),
    "open_alerts": ("Open alerts", "未处理警报"),
    "handoffs": ("Hand-offs waiting", "待转人工"),
    "open_by_kind": ("Open by kind", "按类型未处理"),
    "trending_down": ("Contacts trending down", "情绪下滑的联系人"),
    "trend_note": ("mean mood of the last 48 h against the 5 days before", "近 48 小时平均情绪对比之前 5 天"),
    "none": ("None.", "无。"),
    "chart_14": ("Messages per day by mood, last 14 days", "近 14 天每日各情绪消息数"),
    "positive": ("positive", "积极"),
    "negative": ("negative", "消极"),
    "neutral": ("neutral", "中性"),
    "contact": ("Contact", "联系人"),
    "severity": ("Severity", "级别"),
    "reason": ("Reason", "原因"),
    "excerpts": ("Excerpts", "摘录"),
    "raised": ("Raised", "时间"),
    "actions": ("Actions", "操作"),
    "ack": ("Acknowledge", "确认"),
    "acked": ("Acknowledged", "已确认"),
    "acked_by": ("by", "处理人"),
    "mute": ("Mute", "静音"),
    "minutes": ("min", "分钟"),
    "pause": ("Pause auto-replies", "暂停自动回复"),
    "resume": ("Resume auto-replies", "恢复自动回复"),
    "replies_paused": ("Auto-replies are paused (moods and alerts go on).", "自动回复已暂停（情绪记录和警报照常）。"),
    "replies_on": ("Auto-replies are on.", "自动回复已开启。"),
    "muted_contacts": ("Muted contacts", "已静音的联系人"),
    "until": ("until", "直到"),
    "recent_actions": ("Recent actions", "最近操作"),
    "who": ("Who", "操作人"),
    "what": ("What", "操作"),
    "when": ("When", "时间"),
    "timeline": ("Mood timeline", "情绪时间线"),
    "timeline_note": ("dots: messages (+1 positive, -1 negative); line: mean of the last 5",
                      "圆点：消息（+1 积极，-1 消极）；折线：最近 5 条平均"),
    "recent_messages": ("Recent messages", "最近消息"),
    "alert_history": ("Alerts", "警报记录"),
    "escalation_state": ("Escalation state", "升级状态"),
    "armed": ("armed: a new episode will alert", "待命：新一轮低落会触发警报"),
    "disarmed": ("alerted: waits for the mood to recover", "已报警：等待情绪恢复"),
    "muted_until": ("muted until", "静音至"),
    "last_alert": ("last alert", "上次警报"),
    "score": ("score", "得分"),
    "find_contact": ("Find a contact (name or id)", "查找联系人（名字或 ID）"),
    "find": ("Find", "查找"),
    "not_found": ("No such contact.", "没有这个联系人。"),
    "excerpt_only": ("Excerpts only (store.keep_text is off).", "仅显示摘录（store.keep_text 未开启）。"),
    "new_alert": ("New alert", "新警报"),
    "done": ("Done.", "完成。"),
    "action_ack": ("acknowledged alert", "确认警报"),
    "action_mute": ("muted", "静音"),
    "action_pause": ("paused auto-replies", "暂停自动回复"),
    "action_resume": ("resumed auto-replies", "恢复自动回复"),
}


def translator(language: str) -> Callable[..., str]:
    column = 1 if language == "zh" else 0

    def t(key: str, **values: object) -> str:
        text = STRINGS[key][column] if key in STRINGS else key
        return text.format(**values) if values else text

    return t
