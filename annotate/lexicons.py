"""Small word lists the offline annotator reads text with.

Deliberately small and general (news, fiction, web text): they only need to give the
annotator broad, text-derived values, not accurate ones (the method needs a broad
distribution over semantic choices, not a perfect tagger).
"""

from __future__ import annotations

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SEASONS = ("spring", "summer", "autumn", "winter")

# Countries, regions and large cities; multi-word names are matched as phrases.
LOCATIONS = frozenset(
    """
Afghanistan Albania Algeria Angola Argentina Armenia Australia Austria Azerbaijan Bahrain Bangladesh
Belarus Belgium Bolivia Bosnia Brazil Bulgaria Burma Cambodia Cameroon Canada Chile China Colombia
Congo Croatia Cuba Cyprus Czech_Republic Denmark Ecuador Egypt England Estonia Ethiopia Europe Finland
France Georgia Germany Ghana Greece Haiti Holland Hungary Iceland India Indonesia Iran Iraq Ireland
Israel Italy Jamaica Japan Jordan Kazakhstan Kenya Korea Kosovo Kuwait Latvia Lebanon Liberia Libya
Lithuania Luxembourg Malaysia Mali Malta Mexico Moldova Mongolia Morocco Mozambique Nepal Netherlands
New_Zealand Nicaragua Niger Nigeria North_Korea Northern_Ireland Norway Pakistan Palestine Panama
Paraguay Peru Philippines Poland Portugal Qatar Romania Russia Rwanda Saudi_Arabia Scotland Senegal
Serbia Sierra_Leone Singapore Slovakia Slovenia Somalia South_Africa South_Korea Spain Sri_Lanka Sudan
Sweden Switzerland Syria Taiwan Tanzania Thailand Tibet Tunisia Turkey Uganda Ukraine United_Kingdom
United_States Uruguay Uzbekistan Venezuela Vietnam Wales Yemen Zambia Zimbabwe Britain Great_Britain
UK US USA America Africa Asia Antarctica Arctic Caribbean Middle_East Scandinavia Balkans Siberia
Latin_America South_America North_America Central_America Gulf Pacific Atlantic Mediterranean
London Manchester Liverpool Birmingham Leeds Glasgow Edinburgh Cardiff Belfast Bristol Newcastle
Sheffield Nottingham Leicester Oxford Cambridge Brighton Southampton Aberdeen Dublin Cork York
Paris Berlin Madrid Barcelona Rome Milan Naples Lisbon Amsterdam Brussels Vienna Zurich Geneva
Munich Frankfurt Hamburg Prague Warsaw Budapest Athens Istanbul Ankara Moscow Kiev Kyiv Stockholm
Oslo Copenhagen Helsinki Reykjavik Monaco Marseille Lyon Seville Valencia Turin Venice Florence
New_York Washington Los_Angeles Chicago Boston San_Francisco Seattle Miami Houston Dallas Atlanta
Detroit Philadelphia Las_Vegas Hollywood Silicon_Valley California Texas Florida Ohio Michigan
Toronto Montreal Vancouver Ottawa Quebec Mexico_City Havana Rio Sao_Paulo Buenos_Aires Lima Bogota
Santiago Caracas Tokyo Osaka Beijing Shanghai Hong_Kong Seoul Pyongyang Taipei Bangkok Hanoi Manila
Jakarta Kuala_Lumpur Delhi New_Delhi Mumbai Bombay Calcutta Kolkata Bangalore Karachi Lahore Islamabad
Kabul Tehran Baghdad Basra Fallujah Damascus Beirut Jerusalem Tel_Aviv Gaza Cairo Riyadh Dubai Doha
Nairobi Lagos Johannesburg Cape_Town Durban Harare Khartoum Darfur Addis_Ababa Kinshasa Sydney
Melbourne Brisbane Perth Auckland Wellington Chechnya Kashmir Punjab Bengal Yorkshire Lancashire
Kent Surrey Essex Devon Cornwall Midlands Highlands Ulster Westminster Whitehall Downing_Street
Wall_Street Brussels Strasbourg Davos Wimbledon Twickenham Anfield Old_Trafford Highbury Stamford_Bridge
""".split()
)

# Sentiment lexicon: general evaluative words plus news vocabulary of gain and loss.
POSITIVE_WORDS = frozenset(
    """
good great best better excellent superb brilliant outstanding wonderful fantastic amazing happy
glad pleased delighted love loved loves enjoy enjoyed success successful succeed succeeded win won
wins winner winning victory triumph champion boost boosted boosts gain gains gained growth grow grew
rise rose rising rises record strong stronger strongest improve improved improvement improving
recover recovered recovery benefit benefits profit profits profitable positive optimistic optimism
hope hopeful confident confidence praise praised award awards honour honoured celebrate celebrated
celebration agreement agree agreed welcome welcomed support supported backing progress breakthrough
innovative popular favourite favorite hit impressive perfect safe secure peace peaceful free freedom
opportunity opportunities advantage easy helpful healthy beautiful bright fun exciting excited thrilled
top leading surge surged soared soar rally rallied upbeat robust thriving boom booming fair friendly
""".split()
)
NEGATIVE_WORDS = frozenset(
    """
bad worse worst poor terrible awful horrible sad unhappy angry anger fear feared fears afraid worry
worried worries concern concerns concerned fail failed failure fails loss losses lost lose losing
defeat defeated decline declined declining fall fell falling falls drop dropped dropping slump slumped
cut cuts crisis crash crashed debt deficit recession collapse collapsed weak weaker weakness problem
problems trouble risk risks threat threaten threatened danger dangerous attack attacked attacks war
wars violence violent killed kill killing killings death deaths dead died die murder crime criminal
guilty charged charges accused arrest arrested jail prison sentenced fraud scandal corruption protest
protests strike strikes dispute row rows criticism criticised criticized critics blame blamed warn
warned warning warnings ban banned illegal abuse victims injured injury injuries damage damaged
disaster tragedy bomb bombing terror terrorist terrorism conflict fighting fight hostile difficult
negative pessimistic disappointed disappointing disappointment controversial controversy shortage
unemployment layoffs sacked resign resigned resignation deny denied reject rejected refused oppose
opposed opposition hurt pain suffer suffering struggle struggling struggled doubt doubts sued lawsuit
""".split()
)
NEGATIONS = frozenset("not no never without cannot nor n't".split())

# Action verbs: inflected form -> lemma (the value of the `action` key).
_ACTION_FORMS = """
announce announced announces announcing | launch launched launches launching | win won wins winning
| lose lost loses losing | beat beats beating | sign signed signs signing | buy bought buys buying
| sell sold sells selling | acquire acquired acquires | merge merged merges | invest invested invests
| cut cuts cutting | raise raised raises raising | rise rose rises risen | fall fell falls fallen
| grow grew grows grown | increase increased increases | reduce reduced reduces | warn warned warns
| claim claimed claims | deny denied denies | reject rejected rejects | approve approved approves
| vote voted votes voting | elect elected elects | resign resigned resigns | appoint appointed appoints
| sack sacked sacks | hire hired hires | fire fired fires | arrest arrested arrests | charge charged
| convict convicted | sentence sentenced | sue sued sues | ban banned bans | attack attacked attacks
| kill killed kills | invade invaded invades | protest protested protests | strike struck
| negotiate negotiated negotiates | agree agreed agrees | promise promised promises | pledge pledged
| propose proposed proposes | plan planned plans | release released releases | publish published
| perform performed performs | star starred stars | direct directed directs | record recorded
| play played plays | score scored scores | injure injured | retire retired retires | return returned
| leave left leaves | join joined joins | move moved moves | travel travelled traveled | visit visited
| meet met meets | discover discovered | develop developed develops | build built builds | design designed
| test tested tests | block blocked blocks | hack hacked | download downloaded | criticise criticised
criticized criticises | praise praised praises | celebrate celebrated | investigate investigated
| report reported reports | reveal revealed reveals | predict predicted predicts | forecast forecasts
| export exported exports | import imported imports | borrow borrowed | spend spent spends | pay paid pays
| fund funded funds | tax taxed | regulate regulated | reform reformed | campaign campaigned
| debate debated | argue argued argues | defend defended defends | threaten threatened threatens
| escape escaped | rescue rescued | die died dies | marry married | divorce divorced | born
| compete competed competes | qualify qualified | train trained trains | coach coached | nominate nominated
| award awarded awards | honour honoured | recover recovered recovers | collapse collapsed | crash crashed
| close closed closes | open opened opens | expand expanded expands | shrink shrank | stream streamed
"""
ACTION_LEMMAS: dict[str, str] = {}
for _group in _ACTION_FORMS.replace("\n", " ").split("|"):
    _forms = _group.split()
    for _form in _forms:
        ACTION_LEMMAS.setdefault(_form.lower(), _forms[0].lower())

# Capitalised words that start sentences or titles but name nothing.
NON_ENTITY_WORDS = frozenset(
    """
The A An And But Or If In On At Of For To From By With As It Its It's He She They We You I His Her
Their Our Your My This That These Those There Here When While Where What Which Who Whom Why How
However Meanwhile Although Though After Before During Since Until Because So Yet Also Then Now
Mr Mrs Ms Dr Sir Lord Lady Prof Professor Many Some Most More Other Others Such Each Every All Both
One Two Three Four Five Six Seven Eight Nine Ten First Second Third Last Next New Old Yes No Not
Do Does Did Is Are Was Were Be Been Has Have Had Will Would Can Could Should May Might Must Shall
Chief Minister Secretary President Chairman Director Manager Spokesman Spokeswoman Analysts Officials
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April June July
August September October November December Christmas Easter
Me Him Them Us Mine Yours Hers Ours Theirs Myself Yourself Himself Herself Itself Ourselves Themselves
Everyone Everybody Someone Somebody Anyone Anybody Nobody Nothing Something Everything Anything
Oh Hey Hi Hello Yeah Okay Ok Please Thanks Just Never Always Maybe Perhaps Let Very Even Only
""".split()
)

# Titles in front of a name ("Prime Minister Tony Blair" -> Tony_Blair).
TITLE_WORDS = frozenset(
    """
Prime Minister Chancellor President Vice Secretary Foreign Home Deputy Shadow Senator Judge Captain Coach
Executive Chief Chairman Chairwoman Director Governor Mayor King Queen Prince Princess Pope Bishop
Archbishop Sir Lord Lady Mr Mrs Ms Miss Dr Prof Professor Detective Inspector Officer Sergeant Colonel
Ambassador Commissioner Economist Analyst Spokesman Spokeswoman Manager Boss Striker Midfielder Defender
Goalkeeper Actor Actress Singer Star Producer Presenter Reporter Editor Author Writer Veteran
""".split()
)
