"""The labelled routing set: everyday Chinese and English turns, each with the route it should take.

Labels follow the tools' descriptions: ``web_search`` for current facts, news, prices, weather,
people, opening hours and anything recent; ``memory_recall`` for what the user told Parley
before; ``clock`` for the date and time; ``direct`` for everything the model answers by itself
(greetings, chit-chat, general knowledge, writing, advice). None of these texts is one of the
router's own example utterances (``bench.routing`` checks), and they were written before any
threshold was chosen. Spoken style on purpose: short, often without punctuation, as ASR gives them.
"""

from __future__ import annotations

DIRECT_EN = (
    "hi there",
    "good morning",
    "how's it going",
    "nice to meet you",
    "can you tell me a funny story",
    "what's the difference between a virus and a bacterium",
    "how do airplanes stay in the air",
    "give me some tips for sleeping better",
    "I'm feeling a bit sad today",
    "what should I cook for dinner tonight",
    "translate good night into French",
    "how do I make a cup of green tea",
    "what is a black hole",
    "write a haiku about the ocean",
    "can you help me plan a birthday party",
    "why do cats purr",
    "tell me something interesting",
    "what's your name",
    "who are you",
    "how many legs does a spider have",
    "okay thanks bye",
    "explain recursion to a child",
    "what's a good way to learn Chinese",
    "I just got a new puppy",
    "could you summarize the plot of Romeo and Juliet",
    "what can you do",
)

DIRECT_ZH = (
    "你好呀",
    "早上好",
    "最近怎么样",
    "很高兴认识你",
    "你是谁",
    "你叫什么名字",
    "你好，请用一句话介绍你自己",
    "给我讲一个有趣的故事",
    "为什么天空是蓝色的",
    "怎么才能睡得更好",
    "我今天有点难过",
    "晚饭吃什么好呢",
    "帮我把这句话翻译成英文",
    "怎么泡一杯好喝的绿茶",
    "黑洞是什么",
    "写一首关于月亮的诗",
    "帮我想一个生日派对的点子",
    "猫为什么会打呼噜",
    "说点有意思的事情吧",
    "蜘蛛有几条腿",
    "好的谢谢，再见",
    "用简单的话解释一下递归",
    "学英语有什么好方法",
    "我刚养了一只小狗",
    "罗密欧与朱丽叶讲了什么故事",
    "你能做什么",
)

WEB_EN = (
    "what's the weather like in London right now",
    "any news about the election",
    "how much does an iPhone 16 cost now",
    "who is the CEO of OpenAI these days",
    "what's the stock price of Apple",
    "did it rain in Beijing yesterday",
    "what's the exchange rate between dollars and yuan",
    "who won the Nobel Prize in literature this year",
    "when is the next SpaceX launch",
    "what movies are playing in cinemas this week",
    "is the Forbidden City open to visitors right now",
    "what's the score of the Lakers game",
    "how is the traffic on the way to the airport",
    "what happened in the world today",
    "what are the opening hours of the Louvre",
    "find me a good sushi restaurant nearby",
    "how old is Taylor Swift",
    "what's trending on social media",
    "who is the current president of France",
    "will it snow in Harbin this weekend",
    "what's the population of Shanghai in 2025",
    "are flights to Tokyo cancelled because of the typhoon",
    "when does the new Zelda game come out",
    "what did the Federal Reserve decide about interest rates",
)

WEB_ZH = (
    "上海现在的天气怎么样",
    "最近有什么大新闻",
    "苹果公司的股价是多少",
    "美元兑人民币汇率是多少",
    "现在OpenAI的CEO是谁",
    "昨天北京下雨了吗",
    "今年诺贝尔文学奖颁给了谁",
    "下一次火箭发射是什么时候",
    "这周电影院在放什么电影",
    "故宫现在开放吗",
    "湖人队昨晚比赛的比分是多少",
    "去机场的路上堵车吗",
    "今天世界上发生了什么事",
    "卢浮宫几点开门",
    "附近有什么好吃的日料店",
    "泰勒·斯威夫特今年多大了",
    "微博热搜是什么",
    "法国现在的总统是谁",
    "哈尔滨这周末会下雪吗",
    "上海现在有多少人口",
    "台风来了去东京的航班取消了吗",
    "新的塞尔达游戏什么时候发售",
    "美联储最近加息了吗",
    "iPhone 16现在卖多少钱",
)

MEMORY_EN = (
    "do you remember my wife's name",
    "what was the book I mentioned the other day",
    "have I told you where I work",
    "what's my daughter's birthday",
    "what did I tell you about my job",
    "which city did I say I was moving to",
    "what was I worried about last time we talked",
    "what are my hobbies",
    "did I ever mention my allergies",
    "what's the name of my cat",
    "what did I ask you this morning",
    "remind me of my plans for the weekend",
    "what did we discuss on Monday",
    "what do you know about me",
    "what's my favorite color",
    "what car did I say I drive",
    "how old did I say my son is",
    "what restaurant did I recommend to you",
    "who did I say my best friend was",
    "what medicine am I taking, I told you before",
    "what was that movie I said I liked",
    "where did I go on holiday last summer",
    "what's my phone number again",
    "what did I say my goal for this year was",
)

MEMORY_ZH = (
    "你还记得我老婆叫什么吗",
    "我前几天提到的那本书叫什么",
    "我跟你说过我在哪里工作吗",
    "我女儿的生日是哪天",
    "关于我的工作我跟你讲过什么",
    "我说我要搬去哪个城市",
    "上次聊天的时候我在担心什么",
    "我的爱好是什么",
    "我有没有提过我对什么过敏",
    "我家猫叫什么名字",
    "我今天早上问了你什么",
    "我周末有什么安排来着",
    "我们星期一讨论了什么",
    "你对我了解多少",
    "我最喜欢什么颜色",
    "我说过我开什么车",
    "我儿子几岁来着",
    "我给你推荐过哪家餐厅",
    "我最好的朋友是谁",
    "我之前说我在吃什么药",
    "我喜欢的那部电影叫什么来着",
    "我去年夏天去哪里度假了",
    "我今年的目标是什么，我跟你说过的",
    "我的手机号是多少",
)

CLOCK_EN = (
    "what time is it now",
    "what's today's date",
    "what day is it today",
    "is it morning or afternoon right now",
    "tell me the time",
    "what month is it",
    "what year is it",
    "how late is it",
    "do you know the current time",
    "what's the time in Beijing",
    "is today a weekday",
    "which day of the week is tomorrow",
    "what's the date tomorrow",
    "can you check the clock for me",
    "how many days until the weekend",
    "time please",
    "what hour is it",
    "is it Friday yet",
    "what's today",
    "give me the date",
    "what time is it in Shanghai right now",
    "do you know what day it is",
    "current date and time please",
    "is it past noon",
)

CLOCK_ZH = (
    "现在几点",
    "今天是几月几号",
    "今天周几",
    "现在是上午还是下午",
    "告诉我现在的时间",
    "现在是几月",
    "今年是哪一年",
    "已经很晚了吗",
    "你知道现在的时间吗",
    "北京时间现在是多少",
    "今天是工作日吗",
    "明天星期几",
    "明天是什么日期",
    "帮我看一下时间",
    "离周末还有几天",
    "报一下时间",
    "今天是星期五吗",
    "今天是什么日子",
    "今天几月几日",
    "上海现在是几点",
    "你知道今天是哪天吗",
    "当前的日期和时间",
    "过中午了吗",
    "现在的时间是",
)

ROUTING_SET: tuple[tuple[str, str, str], ...] = tuple(
    (text, language, route)
    for route, by_language in (
        ("direct", {"en": DIRECT_EN, "zh": DIRECT_ZH}),
        ("web_search", {"en": WEB_EN, "zh": WEB_ZH}),
        ("memory_recall", {"en": MEMORY_EN, "zh": MEMORY_ZH}),
        ("clock", {"en": CLOCK_EN, "zh": CLOCK_ZH}),
    )
    for language, texts in by_language.items()
    for text in texts
)
"""``(text, language, route)`` for every labelled turn."""


def split_halves() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """Tuning half (even positions within each route and language) and held-out half (odd positions)."""
    tune: list[tuple[str, str, str]] = []
    held: list[tuple[str, str, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for item in ROUTING_SET:
        key = (item[1], item[2])
        index = seen.get(key, 0)
        seen[key] = index + 1
        (tune if index % 2 == 0 else held).append(item)
    return tune, held


FRESH: dict[str, dict[str, tuple[str, ...]]] = {
    "direct": {
        "en": ("hey what's up", "can you sing me a song", "how do rainbows form", "what's a healthy breakfast",
               "I can't decide what to wear", "tell me a riddle", "how do I say thank you in Japanese",
               "why is the ocean salty", "write a short birthday message for my mom", "good night"),
        "zh": ("嘿，你在干嘛", "给我唱首歌吧", "彩虹是怎么形成的", "早餐吃什么健康", "我不知道穿什么衣服好",
               "出个谜语给我猜", "日语的谢谢怎么说", "海水为什么是咸的", "帮我给妈妈写一段生日祝福", "晚安"),
    },
    "web_search": {
        "en": ("what's the weather forecast for Shenzhen tomorrow", "who won the Oscar for best picture",
               "how much is gold per ounce right now", "is there a train strike today",
               "what's the latest on the Mars mission", "who scored in the Champions League final",
               "how many people live in Tokyo now", "what new phones were announced this month",
               "is the Summer Palace crowded today", "what are people saying about the new tax law"),
        "zh": ("深圳明天天气预报", "奥斯卡最佳影片是哪部", "现在金价多少钱一克", "今天地铁停运了吗",
               "火星任务有什么最新进展", "欧冠决赛谁进球了", "东京现在有多少人", "这个月发布了哪些新手机",
               "颐和园今天人多吗", "大家怎么看新的税法"),
    },
    "memory_recall": {
        "en": ("did I tell you my mother's name", "what was the restaurant I liked", "what's my dog called",
               "what did I say about my exam", "what city am I from", "have I mentioned my favorite band",
               "what did I say I wanted for my birthday", "what's my wife's job", "when did I say my flight was",
               "what did we chat about last time"),
        "zh": ("我跟你说过我妈妈的名字吗", "我喜欢的那家餐厅是哪家", "我家狗叫什么", "关于考试我跟你说了什么",
               "我是哪里人", "我提过我最喜欢的乐队吗", "我说过生日想要什么礼物", "我老婆是做什么工作的",
               "我说我的航班是几号", "上次我们聊了什么"),
    },
    "clock": {
        "en": ("what's the time right now", "do you have the time", "which date is it today", "is it still morning",
               "what day of the month is it", "what time do you have", "is it Sunday today", "what year are we in",
               "the time please", "what's the current hour"),
        "zh": ("现在什么时候了", "你知道几点了吗", "今天几号啊", "现在还是早上吗", "今天是这个月的第几天",
               "现在几点几分", "今天星期天吗", "今年是几几年", "请告诉我时间", "现在是几时"),
    },
}
"""A second held-out set, written after the examples, cues and thresholds were final and scored once."""

FRESH_SET: tuple[tuple[str, str, str], ...] = tuple(
    (text, language, route) for route, by_language in FRESH.items()
    for language, texts in by_language.items() for text in texts
)
"""``(text, language, route)`` of :data:`FRESH`."""
