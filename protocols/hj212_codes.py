"""HJ 212 code tables: commands (CN), systems (ST), data flags, reply codes, factor codes.

Pure data, re-exported by ``protocols.hj212``. Sources are in
``/work/shared/reference/protocols.md`` §1.6-1.9 (alltobs-hj212 and IceCoffee.HJ212 enums).
``FACTORS`` maps a factor code onto airtrace's quantity vocabulary
(``protocols.quantities``) with a *default* unit only: real senders disagree on units
(PM as ug/m3, mg/m3 or ng/m3; pressure as kPa or hPa), so the platform's configuration
decides; the defaults follow what micro stations and dust monitors commonly send.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

#: CN: command codes (HJ 212-2017 §6.6 / alltobs ``Command``)
CN: dict[str, str] = {
    "1000": "set timeout and retry count",
    "1011": "get / upload field unit time",
    "1012": "set field unit time",
    "1013": "field unit time calibration request",
    "1061": "get / upload real-time data interval",
    "1062": "set real-time data interval",
    "1063": "get / upload minute data interval",
    "1064": "set minute data interval",
    "1072": "set field unit password",
    "2011": "real-time data",
    "2012": "stop real-time data",
    "2021": "equipment running status",
    "2022": "stop equipment running status",
    "2031": "daily data",
    "2041": "equipment run-time daily data",
    "2051": "minute data",
    "2061": "hourly data",
    "2081": "data logger power-on time",
    "3011": "zero / span calibration",
    "3012": "instant sampling",
    "3013": "start cleaning / back-blowing",
    "3014": "comparison sampling",
    "3015": "over-limit sample retention",
    "3016": "set sampling period",
    "3017": "get / upload sampling period",
    "3018": "get / upload sample output time",
    "3019": "get / upload equipment unique id",
    "3020": "get / upload field unit information",
    "3021": "set field unit parameters",
    "9011": "request response (QnRtn)",
    "9012": "execution result (ExeRtn)",
    "9013": "notification response",
    "9014": "data response",
}

#: CN codes whose packets carry measurement data
DATA_CN = frozenset({"2011", "2031", "2051", "2061"})

#: ST: system codes (2017; IceCoffee.HJ212 ``SystemCodes``)
ST: dict[str, str] = {
    "21": "surface water quality",
    "22": "air quality",
    "23": "acoustic environment quality",
    "24": "groundwater quality",
    "25": "soil quality",
    "26": "seawater quality",
    "27": "volatile organic compounds",
    "31": "atmospheric pollution source",
    "32": "surface water pollution source",
    "33": "groundwater pollution source",
    "34": "marine pollution source",
    "35": "soil pollution source",
    "36": "noise pollution source",
    "37": "vibration pollution source",
    "38": "radioactive pollution source",
    "39": "construction site dust",
    "41": "electromagnetic radiation source",
    "51": "flue gas discharge process",
    "52": "wastewater discharge process",
    "91": "system interaction",
}


class DataFlag(StrEnum):
    """The per-factor data flag (``a34004-Flag=N``). Only N and S count as valid data."""

    NORMAL = "N"
    STOPPED = "F"
    MAINTENANCE = "M"
    MANUAL = "S"  # a value set by hand; valid
    FAULT = "D"
    CALIBRATION = "C"
    OVER_RANGE = "T"
    COMM_FAULT = "B"

    @property
    def is_valid(self) -> bool:
        return self in (DataFlag.NORMAL, DataFlag.MANUAL)


class QnRtn(IntEnum):
    """``QnRtn`` in a 9011 reply: what the receiver makes of a request."""

    READY = 1
    REJECTED = 2
    PW_ERROR = 3
    MN_ERROR = 4
    ST_ERROR = 5
    FLAG_ERROR = 6
    QN_ERROR = 7
    CN_ERROR = 8
    CRC_ERROR = 9
    UNKNOWN = 100


class ExeRtn(IntEnum):
    """``ExeRtn`` in a 9012 reply: how the execution of a request ended."""

    SUCCESS = 1
    FAILED = 2
    BAD_CONDITION = 3
    TIMEOUT = 4
    BUSY = 5
    SYSTEM_FAULT = 6
    NO_DATA = 100


#: factor code -> (airtrace quantity, default unit). 2017 codes, then the HJ/T 212-2005
#: numeric codes whose 2017 equivalent is known (alltobs ``PollutionGas`` old codes; those
#: come from flue-gas monitoring, hence mg/m3).
FACTORS: dict[str, tuple[str, str]] = {
    "a34001": ("tsp", "ug/m3"),
    "a34002": ("pm10", "ug/m3"),
    "a34004": ("pm25", "ug/m3"),
    "a34005": ("pm1", "ug/m3"),
    "a34011": ("dustfall", "t/km2/30d"),
    "a01001": ("temp", "Cel"),
    "a01002": ("rh", "%RH"),
    "a01006": ("pressure", "kPa"),  # the standard's unit; some senders use hPa
    "a01007": ("wind_speed", "m/s"),
    "a01008": ("wind_dir", "deg"),
    "a21026": ("so2", "ug/m3"),
    "a21004": ("no2", "ug/m3"),
    "a21005": ("co", "mg/m3"),
    "a21002": ("nox", "ug/m3"),
    "a21003": ("no", "ug/m3"),
    "a05024": ("o3", "ug/m3"),  # seen in real packets; not in the alltobs enum
    "a05001": ("co2", "ppm"),  # the standard's table says mg/m3; sensors report ppm
    "LA": ("noise", "dB"),
    # HJ/T 212-2005 numeric codes
    "02": ("so2", "mg/m3"),
    "03": ("nox", "mg/m3"),
    "04": ("co", "mg/m3"),
    "30": ("co2", "mg/m3"),
}

#: HJ/T 212-2005 code -> HJ 212-2017 code, where known (alltobs ``PollutionGas``)
CODES_2005: dict[str, str] = {
    "01": "a34013",  # smoke dust
    "02": "a21026",
    "03": "a21002",
    "04": "a21005",
    "30": "a05001",
    "S01": "a19001",  # oxygen content
    "S08": "a01013",  # flue gas pressure
}

#: quantity -> the 2017 factor code airtrace sends for it (the first 2017 code in FACTORS)
FACTOR_FOR_QUANTITY: dict[str, str] = {}
for _code, (_quantity, _unit) in FACTORS.items():
    if not _code.isdigit():
        FACTOR_FOR_QUANTITY.setdefault(_quantity, _code)
del _code, _quantity, _unit

#: data fields whose values are numbers (parsed to float); every other field stays a string.
#: Rtd/Min/Avg/Max/Cou and their converted (Zs) forms, run time RT, the 2005 alarm value
#: and limits, the noise statistics Data/DayData/NightData, and the vendors' raw value Ori.
NUMERIC_FIELDS = frozenset(
    {
        "Rtd", "Min", "Avg", "Max", "Cou",
        "ZsRtd", "ZsMin", "ZsAvg", "ZsMax",
        "RT", "Ala", "UpValue", "LowValue",
        "Data", "DayData", "NightData", "Ori",
    }
)  # fmt: skip
