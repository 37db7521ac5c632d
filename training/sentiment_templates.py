"""Template families of the project-written sentiment corpus (see training/data/sentiment/).

A family is one way of saying one thing: a topic, a label and 3-6 phrasings that share slots.
The label is a property of the family (LABELING.md says why each family has its label); the
``expect`` families compute theirs from the numbers (actual vs expectation). Every sentence of a
family lands in the same split, so paraphrases never straddle train and test.
"""

from __future__ import annotations

NEG, NEU, POS = "negative", "neutral", "positive"

SLOTS: dict[str, list[str]] = {
    "co": ["Northwind Semiconductor", "Halvorsen Foods", "Brightline Logistics", "Corvane Therapeutics",
           "Ostrander Energy", "Pellham Retail Group", "Quillfeather Software", "Marrow Bay Bank",
           "Tessaract Networks", "Ambervale Mining", "Kilbride Motors", "Solvane Pharmaceuticals",
           "Redgate Airlines", "Verity Insurance", "Lumen Ridge Utilities", "Cobalt Harbor Shipping",
           "Greywater Chemicals", "Fenwick Apparel", "Astera Cloud", "Ironbark Industrials",
           "Pinecrest Homebuilders", "Daventry Media", "Orison Biotech", "Calloway Steel",
           "the company", "the group", "the retailer", "the chipmaker", "the lender", "the insurer"],
    "metric": ["revenue", "net sales", "operating income", "free cash flow", "adjusted EBITDA",
               "same-store sales", "bookings", "net interest income", "gross margin",
               "subscriber growth", "order intake", "operating cash flow"],
    "period": ["the third quarter", "the second quarter", "the fourth quarter", "the first quarter",
               "fiscal 2024", "the first half", "the quarter", "the latest quarter", "the full year"],
    "pct": ["3%", "4%", "5%", "6%", "7%", "8%", "9%", "11%", "12%", "14%", "17%", "19%", "22%",
            "26%", "31%"],
    "firm": ["Kestrel Securities", "Brightwater Capital", "Harlow & Finch", "Meridian Research",
             "Ashcombe Partners", "Larkspur Equity Research", "Tamsin Brothers", "Oakhurst Advisors"],
    "seg": ["cloud division", "North American business", "consumer segment", "data-center unit",
            "European operations", "wholesale arm", "services business", "industrial segment",
            "specialty pharmacy unit", "advertising business"],
    "product": ["flagship processor", "new diabetes drug", "electric pickup", "infusion pump",
                "home battery", "next-generation router", "store-brand range", "cargo aircraft"],
    "region": ["China", "Europe", "Latin America", "the United States", "Southeast Asia", "Japan"],
    "amount": ["$120 million", "$450 million", "$1.2 billion", "$2.5 billion", "$75 million",
               "$800 million", "$3 billion", "$310 million"],
    "num": ["1,200", "450", "3,000", "800", "2,500", "600", "5,000"],
    "macro": ["inflation", "unemployment", "consumer spending", "factory output", "retail sales",
              "wage growth", "housing starts", "business investment"],
    "bank": ["the Federal Reserve", "the European Central Bank", "the Bank of England",
             "the central bank", "the Bank of Japan"],
    "bp": ["25 basis points", "50 basis points", "a quarter point", "half a point"],
    "target": ["$48", "$62", "$75", "$90", "$110", "$135", "$160", "$210"],
    "mgr": ["chief executive", "chief financial officer", "chairman", "president",
            "head of operations"],
}

# (family id, topic, label, hard, templates). Topics: company, earnings, guidance, analyst,
# macro, risk (risk factors), mdna (MD&A).
FAMILIES: list[tuple[str, str, str, bool, list[str]]] = [
    # --- company news ---
    ("co_contract_win", "company", POS, False, [
        "{co} won a {amount} contract to supply its {product} in {region}.",
        "{co} said it was awarded a multi-year deal worth {amount} for its {product}.",
        "{co} signed a {amount} supply agreement in {region}, its largest ever.",
        "A {amount} order for the {product} lifted {co}'s backlog to a record."]),
    ("co_recall", "company", NEG, False, [
        "{co} recalled its {product} after regulators found a safety defect.",
        "{co} is halting sales of the {product} in {region} following a safety investigation.",
        "Regulators in {region} ordered {co} to pull the {product} from the market.",
        "{co} will take a {amount} charge to recall the {product}."]),
    ("co_layoffs_distress", "company", NEG, False, [
        "{co} will cut {num} jobs as demand in its {seg} collapses.",
        "{co} closed plants in {region} and laid off {num} workers after orders dried up.",
        "{co} suspended its dividend to preserve cash as losses mounted.",
        "{co} warned it may breach its loan covenants if sales keep falling."]),
    ("co_neutral_admin", "company", NEU, False, [
        "{co} will hold its annual shareholder meeting in {region} next month.",
        "{co} named a new {mgr}, effective at the start of {period}.",
        "{co} said it will report results for {period} after the market closes on Thursday.",
        "{co} moved its headquarters listing to a new exchange segment with no change to its shares.",
        "{co}'s board declared its regular quarterly dividend, unchanged from the prior quarter."]),
    ("co_acquisition_pos", "company", POS, False, [
        "{co} agreed to be acquired for {amount}, a 35% premium to its last closing price.",
        "Shares of {co} jumped after a rival offered {amount} in cash for the business.",
        "{co} received a takeover bid that values it well above its market price."]),
    ("co_lawsuit_neg", "company", NEG, False, [
        "{co} was ordered to pay {amount} in damages after losing a patent lawsuit.",
        "Prosecutors in {region} opened a fraud investigation into {co}'s accounting.",
        "{co} agreed to a {amount} settlement over allegations that it misled investors.",
        "{co}'s auditor resigned, citing concerns about the company's internal controls."]),
    ("co_negated_bad", "company", POS, True, [
        "{co} said it does not expect any layoffs this year despite the slowdown.",
        "Regulators found no safety defect in the {product}, clearing {co} to resume sales.",
        "{co} will not need to raise new equity, its {mgr} said, easing dilution fears.",
        "The court dismissed the lawsuit against {co}, removing a {amount} liability.",
        "{co} confirmed that the cyberattack did not compromise any customer data."]),
    ("co_negated_good", "company", NEG, True, [
        "{co} did not win the {amount} contract it had been bidding for.",
        "{co} said the {product} will not launch this year as previously planned.",
        "The takeover talks with {co} ended without an agreement, and no new bidder emerged.",
        "{co} failed to secure regulatory approval for its {product} in {region}.",
        "{co} no longer expects the {seg} to return to profit next year."]),
    ("co_mixed_but_neg", "company", NEG, True, [
        "{co} opened new stores in {region}, but a {amount} writedown wiped out its annual profit.",
        "Although {co} launched the {product} on time, early sales were far below plan.",
        "{co} won new customers in {region}; however, it lost its largest account to a rival.",
        "Despite a new {mgr}, {co} said turnaround costs will push it into a loss."]),
    ("co_mixed_but_pos", "company", POS, True, [
        "{co} took a small restructuring charge, but the cost cuts will add {amount} to annual profit.",
        "Although the {product} launch slipped a month, pre-orders have already doubled the target.",
        "{co} exited its loss-making {seg}; the sale brings in {amount} and lifts margins.",
        "Despite a weak start to {period}, {co} said orders recovered strongly in the final weeks."]),
    # --- earnings ---
    ("earn_beat", "earnings", POS, False, [
        "{co} reported {period} {metric} up {pct}, ahead of analyst estimates.",
        "{co} beat expectations as {metric} rose {pct} in {period}.",
        "{co}'s {metric} grew {pct} year over year, topping the consensus forecast.",
        "Strong demand in its {seg} helped {co} post record {metric} for {period}."]),
    ("earn_miss", "earnings", NEG, False, [
        "{co} reported {period} {metric} down {pct}, well short of estimates.",
        "{co} missed expectations as {metric} fell {pct} in {period}.",
        "{co}'s {metric} declined {pct} from a year earlier, below the consensus forecast.",
        "Weak demand in its {seg} pushed {co} to a loss in {period}."]),
    ("earn_inline", "earnings", NEU, False, [
        "{co}'s {period} {metric} was in line with analyst estimates.",
        "{co} reported {metric} that matched the consensus forecast for {period}.",
        "{co}'s results for {period} were broadly as expected, with {metric} close to guidance.",
        "{co} said {metric} for {period} was roughly flat, matching what it had guided."]),
    ("earn_less_bad", "earnings", POS, True, [
        "{co}'s {metric} fell {pct} in {period}, a smaller decline than analysts had feared.",
        "{co} posted a narrower loss than expected for {period}, sending the shares higher.",
        "The drop in {co}'s {metric} was less severe than expected, and the shares rallied.",
        "{co} lost money in {period}, but far less than the consensus had forecast."]),
    ("earn_good_not_enough", "earnings", NEG, True, [
        "{co}'s {metric} rose {pct} in {period}, but that fell short of the growth investors expected.",
        "Despite record {metric}, {co}'s results missed the market's elevated expectations.",
        "{co} grew {metric} by {pct}, yet the figure disappointed analysts who had forecast more.",
        "Even with {metric} up {pct}, {co} came in below the whisper number and the stock fell."]),
    ("earn_not_miss", "earnings", POS, True, [
        "{co} did not miss a single estimate in {period}, beating on {metric} and margins.",
        "{co}'s {metric} was not only above forecasts but also its highest in five years.",
        "Fears of a profit warning proved unfounded as {co} beat estimates for {period}.",
        "{co} never came close to the downside scenario analysts had modeled for {period}."]),
    ("earn_not_beat", "earnings", NEG, True, [
        "{co} did not meet its own {metric} target for {period}.",
        "{co}'s {metric} failed to match estimates for a third straight quarter.",
        "{co} could not offset weaker {seg} sales, and {metric} missed forecasts.",
        "Neither {metric} nor margins reached the levels analysts expected for {period}."]),
    # --- guidance ---
    ("guid_raise", "guidance", POS, False, [
        "{co} raised its full-year {metric} forecast after a strong {period}.",
        "{co} lifted guidance, now expecting {metric} growth of about {pct} this year.",
        "{co} increased its outlook for {metric}, citing robust orders in its {seg}.",
        "{co}'s management boosted the annual target for {metric} for the second time this year."]),
    ("guid_cut", "guidance", NEG, False, [
        "{co} cut its full-year {metric} forecast, blaming weak demand in {region}.",
        "{co} lowered guidance and now expects {metric} to fall about {pct} this year.",
        "{co} withdrew its annual outlook, saying visibility in its {seg} has deteriorated.",
        "{co} issued a profit warning, the second this year, as orders slumped."]),
    ("guid_reaffirm", "guidance", NEU, False, [
        "{co} reaffirmed its full-year {metric} outlook.",
        "{co} kept its annual guidance for {metric} unchanged.",
        "{co} said it still expects {metric} growth in line with its previous forecast.",
        "{co} maintained its {metric} target for the year and gave no new outlook for {region}."]),
    ("guid_neutral_method", "guidance", NEU, False, [
        "{co} will give guidance once a year instead of every quarter, starting in {period}.",
        "{co} said its outlook excludes the effect of the pending acquisition in {region}.",
        "{co} will present its {metric} outlook at an investor day in {region} next month.",
        "{co} now reports {metric} guidance in constant currency; the targets themselves did not change.",
        "{co}'s {mgr} said the company will update its forecast when it reports {period} results."]),
    ("guid_cut_less_than_feared", "guidance", POS, True, [
        "{co} trimmed its outlook by less than analysts had feared, and the shares rose.",
        "{co}'s guidance cut was smaller than expected, easing worries about demand in {region}.",
        "{co} lowered its {metric} forecast only slightly, a relief after weeks of downgrade fears."]),
    ("guid_raise_below_consensus", "guidance", NEG, True, [
        "{co} raised its {metric} outlook, but the new range is still below the consensus.",
        "{co} lifted guidance by less than investors had hoped, and the stock slid.",
        "The increase in {co}'s forecast fell short of what analysts had already priced in."]),
    ("guid_not_cut", "guidance", POS, True, [
        "{co} did not cut its forecast, contrary to market fears, and reiterated growth of {pct}.",
        "{co} said it sees no need to lower guidance despite the slowdown in {region}.",
        "{co}'s management ruled out a profit warning and said demand remains strong."]),
    # --- analyst actions ---
    ("an_upgrade", "analyst", POS, False, [
        "{firm} upgraded {co} to buy from hold, citing improving margins.",
        "{firm} raised its price target on {co} to {target} from a lower level.",
        "{firm} initiated coverage of {co} with an outperform rating and a {target} target.",
        "Analysts at {firm} added {co} to their top picks list for next year."]),
    ("an_downgrade", "analyst", NEG, False, [
        "{firm} downgraded {co} to sell, warning of slowing demand in its {seg}.",
        "{firm} cut its price target on {co} to {target}, citing weaker pricing.",
        "{firm} initiated coverage of {co} with an underperform rating.",
        "Analysts at {firm} removed {co} from their conviction buy list."]),
    ("an_neutral", "analyst", NEU, False, [
        "{firm} reiterated its hold rating on {co} with a {target} price target.",
        "{firm} transferred coverage of {co} to a new analyst with no rating change.",
        "{firm} kept its neutral rating on {co} ahead of the {period} results.",
        "{firm} will host {co}'s {mgr} at its industry conference next week."]),
    ("an_pt_cut_still_buy", "analyst", NEU, True, [
        "{firm} trimmed its target on {co} to {target} to reflect currency moves but kept its rating.",
        "{firm} nudged its {co} estimates for exchange rates; its rating is unchanged.",
        "{firm} updated its {co} model for the new share count with no change to its view."]),
    ("an_downgrade_on_valuation", "analyst", NEG, True, [
        "{firm} downgraded {co} to neutral after the rally, saying the good news is priced in.",
        "{firm} moved {co} to hold from buy on valuation, despite praising the {seg}.",
        "Although it likes the {product}, {firm} cut {co} to underweight on valuation."]),
    # --- macro ---
    ("mac_strong", "macro", POS, False, [
        "{macro} rose more than economists expected last month, pointing to a resilient economy.",
        "The economy grew faster than forecast in {period}, led by {macro}.",
        "{macro} in {region} rebounded strongly, beating every forecast in a Reuters poll.",
        "Stocks rallied after data showed {macro} accelerating without a pickup in prices."]),
    ("mac_weak", "macro", NEG, False, [
        "{macro} fell sharply last month, raising fears of a recession in {region}.",
        "The economy in {region} contracted in {period}, its worst performance in a decade.",
        "Stocks slumped after {macro} came in far weaker than forecast.",
        "A surprise jump in inflation in {region} sent bond yields to a 15-year high."]),
    ("mac_neutral", "macro", NEU, False, [
        "{bank} will publish the minutes of its latest policy meeting on Wednesday.",
        "{bank} left interest rates unchanged, as widely expected.",
        "Figures on {macro} in {region} are due on Friday.",
        "Economists polled expect {macro} in {region} to be little changed this month."]),
    ("mac_flat", "macro", NEU, False, [
        "{macro} in {region} was unchanged last month, exactly as economists had forecast.",
        "{bank} kept its policy rate on hold and repeated that future decisions depend on the data.",
        "{macro} in {region} held steady in {period}, matching the consensus.",
        "Revised figures left {macro} in {region} little changed from the first estimate."]),
    ("mac_bank_cut", "macro", POS, False, [
        "{bank} cut interest rates by {bp} and signaled more easing, lifting equities.",
        "{bank} unexpectedly lowered rates by {bp}, sending stocks to record highs.",
        "Markets cheered as {bank} said it is ready to cut rates further to support growth."]),
    ("mac_bank_hike", "macro", NEG, False, [
        "{bank} raised interest rates by {bp}, more than markets expected, and stocks fell.",
        "{bank} warned that rates will stay higher for longer, hitting rate-sensitive shares.",
        "Equities slid after {bank} signaled two more hikes to fight inflation."]),
    ("mac_less_bad", "macro", POS, True, [
        "{macro} in {region} fell, but by far less than economists had predicted.",
        "The contraction in {region} was milder than forecast, and stocks rose.",
        "Inflation in {region} is still high, but it cooled more than expected last month.",
        "Job losses in {region} were smaller than feared, easing recession worries."]),
    ("mac_good_bad_for_market", "macro", NEG, True, [
        "{macro} came in so strong that traders now expect {bank} to raise rates again, and stocks fell.",
        "A hotter-than-expected jobs report pushed yields higher and weighed on equities.",
        "Robust {macro} data dashed hopes of a rate cut from {bank}, sending shares lower."]),
    # --- filings: risk factors ---
    ("risk_boiler", "risk", NEU, False, [
        "Our results may fluctuate from quarter to quarter due to factors outside our control.",
        "We may be subject to claims and litigation in the ordinary course of business.",
        "Changes in tax laws in {region} could affect our effective tax rate.",
        "We depend on key personnel, and the loss of any of them could affect our business.",
        "Our operations in {region} are subject to the risks of doing business internationally.",
        "Fluctuations in foreign currency exchange rates could affect our reported {metric}.",
        "We rely on third-party suppliers for certain components of the {product}.",
        "Our business could be affected by natural disasters, pandemics or other catastrophic events.",
        "The market price of our common stock may be volatile.",
        "Cyberattacks could disrupt our operations and expose us to liability."]),
    ("risk_materialized", "risk", NEG, False, [
        "A key supplier in {region} ceased operations, and we have not found a replacement.",
        "We identified a material weakness in our internal control over financial reporting.",
        "There is substantial doubt about our ability to continue as a going concern.",
        "We are in default under our credit facility and the lenders may accelerate repayment.",
        "We received a notice that our common stock no longer meets the exchange's listing standards.",
        "Our largest customer, representing about {pct} of {metric}, terminated its contract."]),
    ("risk_no_material_change", "risk", NEU, True, [
        "There have been no material changes to the risk factors disclosed in our annual report.",
        "We are not currently party to any legal proceedings that we believe are material.",
        "We do not believe the matter will have a material adverse effect on our financial position.",
        "No single customer accounted for more than {pct} of {metric} in {period}."]),
    # --- filings: MD&A ---
    ("mdna_improve", "mdna", POS, False, [
        "{metric} increased {pct} compared with the prior year, driven by higher volumes in our {seg}.",
        "Gross margin improved due to favorable pricing and lower input costs.",
        "Cash provided by operating activities increased to {amount}, reflecting higher earnings.",
        "We reduced total debt by {amount} during {period} and improved our liquidity position.",
        "Backlog at the end of {period} reached a record {amount}."]),
    ("mdna_deteriorate", "mdna", NEG, False, [
        "{metric} decreased {pct} compared with the prior year, primarily due to lower volumes in our {seg}.",
        "Gross margin declined due to higher input costs that we were unable to pass on.",
        "We recorded an impairment charge of {amount} related to our {seg}.",
        "Cash used in operating activities increased to {amount}, reflecting operating losses.",
        "Our liquidity declined, and we drew {amount} on our revolving credit facility to fund operations."]),
    ("mdna_neutral", "mdna", NEU, False, [
        "The following discussion should be read together with our consolidated financial statements.",
        "{metric} is presented on a constant-currency basis to aid comparison.",
        "Certain prior-period amounts have been reclassified to conform to the current presentation.",
        "We report our results in three segments, including our {seg}.",
        "Interest expense was essentially unchanged from the prior year.",
        "The change in {metric} was not significant compared with {period} of the prior year."]),
    ("mdna_offset_neg", "mdna", NEG, True, [
        "Higher pricing partially offset lower volumes, and {metric} decreased {pct} overall.",
        "Growth in our {seg} was more than offset by declines elsewhere, and {metric} fell.",
        "Cost savings of {amount} were not enough to offset the decline in {metric}."]),
    ("mdna_offset_pos", "mdna", POS, True, [
        "Lower volumes in our {seg} were more than offset by price increases, and {metric} rose {pct}.",
        "Despite higher input costs, productivity gains lifted operating margin to a record.",
        "Although currency was a headwind, {metric} increased {pct} on a reported basis."]),
]

# Numbers that only mean something against an expectation: the label is computed from them.
# (family id, topic, templates); slots {a} actual and {e} expected, ``unit`` formats them.
EXPECT_FAMILIES: list[tuple[str, str, str, list[str]]] = [
    ("exp_eps", "earnings", "eps", [
        "{co} earned {a} a share in {period}; analysts had expected {e}.",
        "{co} reported adjusted EPS of {a} versus the consensus estimate of {e}.",
        "{co}'s {period} earnings per share came to {a}, against forecasts of {e}."]),
    ("exp_rev", "earnings", "bn", [
        "{co} posted {period} revenue of {a}, compared with the {e} analysts expected.",
        "{co}'s sales totaled {a} in {period} versus a consensus of {e}.",
        "Revenue at {co} came in at {a} for {period}; Wall Street was looking for {e}."]),
    ("exp_macro", "macro", "jobs", [
        "Employers in {region} added {a} jobs last month, versus economists' forecast of {e}.",
        "Payrolls rose by {a} in the latest report; the consensus was {e}.",
        "The economy created {a} jobs, compared with expectations of {e}."]),
]
