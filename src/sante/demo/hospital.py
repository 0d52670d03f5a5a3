"""The demo facility: Bệnh viện Đa khoa Sante, a provincial general hospital in Vinh, Nghệ An.

What it is made of, as FHIR resources with stable, readable ids (`bvdk-sante-...`):
- the hospital Organization and one Organization per department (`partOf` the hospital, type `dept`);
- a Location tree: the site (physicalType `si`) → a department (`wi`, a wing) → a ward (`wa`) → a room (`ro`) →
  a bed (`bd`, with `operationalStatus` from HL7 v2 table 0116: O occupied, U unoccupied, H housekeeping, C
  closed); outpatient clinics (phòng khám), laboratory and imaging rooms and the pharmacy are rooms of their
  departments;
- a HealthcareService per clinic (and for the emergency, laboratory, imaging and pharmacy services);
- the staff: a Practitioner and a PractitionerRole (organization, location, code, specialty) each.

The hospital Organization carries the seed marker (`SEED_MARKER_SYSTEM|HOSPITAL_ID`): `sante.demo.seed` writes
it last, so its presence means the whole demo was seeded.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sante.clinical import admin_units
from sante.demo.people import Name, random_name, random_phone, weighted

HOSPITAL_ID = "bvdk-sante"
HOSPITAL_NAME = "Bệnh viện Đa khoa Sante"
HOSPITAL_COMMUNE = "16681"  # Phường Thành Vinh, Tỉnh Nghệ An
HOSPITAL_LINE = "Số 178, đường Trường Chinh"
SEED_MARKER_SYSTEM = "https://sante.health/fhir/sid/demo-hospital"
PRACTISING_CERTIFICATE_SYSTEM = "https://sante.health/fhir/sid/cchn"  # chứng chỉ hành nghề
STAFF_ROLE_SYSTEM = "https://sante.health/fhir/CodeSystem/user-role"  # the Sante role (sante.auth.roles)

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
BED_STATUS = "http://terminology.hl7.org/CodeSystem/v2-0116"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"
SERVICE_CATEGORY = "http://terminology.hl7.org/CodeSystem/service-category"
SNOMED = "http://snomed.info/sct"

BED_STATUS_DISPLAY = {"O": "Occupied", "U": "Unoccupied", "H": "Housekeeping", "C": "Closed"}
PHYSICAL_DISPLAY = {"si": "Site", "wi": "Wing", "wa": "Ward", "ro": "Room", "bd": "Bed"}


def ref(rtype: str, rid: str, display: str | None = None) -> dict[str, str]:
    out = {"reference": f"{rtype}/{rid}"}
    if display:
        out["display"] = display
    return out


# -- the plan -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WardPlan:
    key: str  # "a"
    label: str  # "Khu A – Nội tổng hợp"
    rooms: tuple[int, ...]  # room numbers
    beds_per_room: int


@dataclass(frozen=True, slots=True)
class RoomPlan:
    key: str
    name: str
    type: tuple[str, str]  # v3-RoleCode (code, display)


@dataclass(frozen=True, slots=True)
class ClinicPlan:
    key: str  # "noi-1"
    ticket: str  # the ticket prefix shown to patients: "N1"
    name: str  # "Phòng khám Nội 1"
    type: tuple[str, str]  # v3-RoleCode
    specialty: tuple[str, str]  # SNOMED practice setting
    service: str  # the HealthcareService name


@dataclass(frozen=True, slots=True)
class DepartmentPlan:
    key: str
    name: str
    type: tuple[str, str] | None  # v3-RoleCode of its Location; None: an office without a Location
    specialty: tuple[str, str] | None
    wards: tuple[WardPlan, ...] = ()
    rooms: tuple[RoomPlan, ...] = ()
    clinics: tuple[ClinicPlan, ...] = ()
    # staff: (Sante role, how many, title prefix, job title)
    staff: tuple[tuple[str, int, str, str], ...] = ()


def _rooms(first: int, n: int) -> tuple[int, ...]:
    return tuple(range(first, first + n))


DEPARTMENTS: tuple[DepartmentPlan, ...] = (
    DepartmentPlan(
        "kham-benh", "Khoa Khám bệnh", ("OF", "Outpatient facility"), ("408443003", "General medical practice"),
        rooms=(RoomPlan("tiep-don", "Quầy tiếp đón", ("OF", "Outpatient facility")),),
        clinics=(
            ClinicPlan("noi-1", "N1", "Phòng khám Nội 1", ("GIM", "General internal medicine clinic"),
                       ("419192003", "Internal medicine"), "Khám Nội tổng quát"),
            ClinicPlan("noi-2", "N2", "Phòng khám Nội 2", ("GIM", "General internal medicine clinic"),
                       ("419192003", "Internal medicine"), "Khám Nội tổng quát"),
            ClinicPlan("tim-mach", "TM", "Phòng khám Tim mạch", ("CARD", "Ambulatory Health Care Facilities; "
                       "Clinic/Center; Rehabilitation: Cardiac Facilities"), ("394579002", "Cardiology"),
                       "Khám Tim mạch – Tăng huyết áp"),
            ClinicPlan("noi-tiet", "NT", "Phòng khám Nội tiết", ("ENDO", "Endocrinology clinic"),
                       ("394583002", "Endocrinology"), "Khám Nội tiết – Đái tháo đường"),
            ClinicPlan("ho-hap", "HH", "Phòng khám Hô hấp", ("GIM", "General internal medicine clinic"),
                       ("419192003", "Internal medicine"), "Khám Hô hấp"),
            ClinicPlan("truyen-nhiem", "TN", "Phòng khám Truyền nhiễm", ("INFD", "Infectious disease clinic"),
                       ("394807007", "Infectious diseases"), "Khám Truyền nhiễm"),
            ClinicPlan("tieu-hoa", "TH", "Phòng khám Tiêu hóa", ("GI", "Gastroenterology clinic"),
                       ("394584008", "Gastroenterology"), "Khám Tiêu hóa"),
            ClinicPlan("ngoai", "NG", "Phòng khám Ngoại", ("SU", "Surgery clinic"), ("394609007", "Surgery-general"),
                       "Khám Ngoại – Chấn thương"),
            ClinicPlan("nhi", "NH", "Phòng khám Nhi", ("PEDC", "Pediatrics clinic"),
                       ("394537008", "Pediatric specialty"), "Khám Nhi"),
            ClinicPlan("san", "SP", "Phòng khám Sản phụ khoa", ("OB", "Obstetrics clinic"),
                       ("394585009", "Obstetrics and gynecology"), "Khám Sản phụ khoa"),
        ),
        staff=(("physician", 10, "BS.", "Bác sĩ khám bệnh"), ("nurse", 4, "ĐD.", "Điều dưỡng"),
               ("receptionist", 3, "", "Nhân viên tiếp đón")),
    ),
    DepartmentPlan(
        "cap-cuu", "Khoa Cấp cứu", ("ER", "Emergency room"), ("394576009", "Surgical-Accident & emergency"),
        wards=(WardPlan("luu", "Khu lưu bệnh", (1,), 10),),
        staff=(("physician", 3, "BS.", "Bác sĩ"), ("nurse", 4, "ĐD.", "Điều dưỡng")),
    ),
    DepartmentPlan(
        "noi", "Khoa Nội", ("HU", "Hospital unit"), ("419192003", "Internal medicine"),
        wards=(WardPlan("a", "Khu A – Nội tổng hợp", _rooms(201, 6), 6),
               WardPlan("b", "Khu B – Tim mạch, Nội tiết", _rooms(207, 6), 6),
               WardPlan("c", "Khu C – Hô hấp, Truyền nhiễm", _rooms(213, 6), 6)),
        staff=(("physician", 4, "BS.", "Bác sĩ"), ("nurse", 6, "ĐD.", "Điều dưỡng")),
    ),
    DepartmentPlan(
        "ngoai", "Khoa Ngoại", ("HU", "Hospital unit"), ("394609007", "Surgery-general"),
        wards=(WardPlan("a", "Khu A – Ngoại tổng hợp", _rooms(301, 6), 5),
               WardPlan("b", "Khu B – Chấn thương chỉnh hình", _rooms(307, 6), 5)),
        staff=(("physician", 3, "BS.", "Bác sĩ"), ("nurse", 5, "ĐD.", "Điều dưỡng")),
    ),
    DepartmentPlan(
        "nhi", "Khoa Nhi", ("PEDU", "Pediatric unit"), ("394537008", "Pediatric specialty"),
        wards=(WardPlan("a", "Khu A – Nhi tổng hợp", _rooms(401, 6), 6),
               WardPlan("b", "Khu B – Sơ sinh", _rooms(407, 4), 4)),
        staff=(("physician", 3, "BS.", "Bác sĩ"), ("nurse", 5, "ĐD.", "Điều dưỡng")),
    ),
    DepartmentPlan(
        "san", "Khoa Sản", ("HU", "Hospital unit"), ("394585009", "Obstetrics and gynecology"),
        wards=(WardPlan("a", "Khu A – Sản", _rooms(501, 5), 4), WardPlan("b", "Khu B – Phụ khoa", _rooms(506, 5), 4)),
        staff=(("physician", 3, "BS.", "Bác sĩ"), ("nurse", 4, "HS.", "Hộ sinh")),
    ),
    DepartmentPlan(
        "hstc", "Khoa Hồi sức tích cực", ("ICU", "Intensive care unit"), ("408478003", "Critical care medicine"),
        wards=(WardPlan("a", "Khu Hồi sức", (601, 602), 6),),
        staff=(("physician", 2, "BS.", "Bác sĩ"), ("nurse", 4, "ĐD.", "Điều dưỡng")),
    ),
    DepartmentPlan(
        "xet-nghiem", "Khoa Xét nghiệm", ("HLAB", "hospital laboratory"), ("394915009", "General pathology"),
        rooms=(RoomPlan("lay-mau", "Phòng lấy mẫu xét nghiệm", ("HLAB", "hospital laboratory")),
               RoomPlan("hoa-sinh", "Phòng xét nghiệm Hóa sinh", ("HLAB", "hospital laboratory")),
               RoomPlan("huyet-hoc", "Phòng xét nghiệm Huyết học", ("HLAB", "hospital laboratory")),
               RoomPlan("vi-sinh", "Phòng xét nghiệm Vi sinh", ("HLAB", "hospital laboratory"))),
        staff=(("physician", 1, "BS.", "Bác sĩ xét nghiệm"), ("lab_technician", 4, "KTV.", "Kỹ thuật viên xét nghiệm")),
    ),
    DepartmentPlan(
        "cdha", "Khoa Chẩn đoán hình ảnh", ("HRAD", "radiology unit"), ("394914008", "Radiology"),
        rooms=(RoomPlan("x-quang", "Phòng chụp X-quang", ("HRAD", "radiology unit")),
               RoomPlan("sieu-am", "Phòng siêu âm", ("HRAD", "radiology unit")),
               RoomPlan("ct", "Phòng chụp CT", ("HRAD", "radiology unit"))),
        staff=(("radiologist", 3, "BS.", "Bác sĩ chẩn đoán hình ảnh"),),
    ),
    DepartmentPlan(
        "duoc", "Khoa Dược", ("PHARM", "Pharmacy"), ("394600006", "Clinical pharmacology"),
        rooms=(RoomPlan("nha-thuoc", "Nhà thuốc bệnh viện", ("OUTPHARM", "outpatient pharmacy")),
               RoomPlan("kho", "Kho thuốc – Cấp phát nội trú", ("INPHARM", "inpatient pharmacy"))),
        staff=(("pharmacist", 3, "DS.", "Dược sĩ"),),
    ),
    DepartmentPlan("ban-giam-doc", "Ban Giám đốc", None, None,
                   staff=(("manager", 1, "TS.BS.", "Giám đốc bệnh viện"),)),
    DepartmentPlan("khth", "Phòng Kế hoạch tổng hợp", None, None,
                   staff=(("manager", 1, "ThS.", "Trưởng phòng Kế hoạch tổng hợp"),
                          ("public_health", 2, "BS.", "Cán bộ y tế công cộng"))),
    DepartmentPlan("cntt", "Phòng Công nghệ thông tin", None, None,
                   staff=(("admin", 1, "KS.", "Quản trị hệ thống"),)),
)

# FHIR's practitioner-role code for each Sante staff role (none fits the others).
_HL7_ROLE = {"physician": "doctor", "radiologist": "doctor", "nurse": "nurse", "pharmacist": "pharmacist",
             "admin": "ict"}


# -- the built hospital -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bed:
    id: str
    name: str
    room: str  # Location id
    ward: str
    department: str  # department key


@dataclass(frozen=True, slots=True)
class Clinic:
    id: str  # Location id
    service: str  # HealthcareService id
    plan: ClinicPlan


@dataclass(frozen=True, slots=True)
class Staff:
    practitioner: str  # Practitioner id
    role_id: str  # PractitionerRole id
    role: str  # Sante role
    department: str  # department key
    name: Name
    gender: str
    prefix: str
    title: str  # the job title, in Vietnamese
    location: str | None  # Location id where they work
    service: str | None = None  # HealthcareService id (clinic physicians)

    @property
    def display(self) -> str:
        return f"{self.prefix} {self.name.text}".strip()

    def reference(self) -> dict[str, str]:
        return ref("Practitioner", self.practitioner, self.display)


@dataclass(slots=True)
class Hospital:
    departments: dict[str, DepartmentPlan]
    beds: list[Bed]
    clinics: dict[str, Clinic]
    staff: list[Staff]
    rooms: dict[str, str] = field(default_factory=dict)  # service room key -> Location id
    names: dict[str, str] = field(default_factory=dict)  # Location id -> name

    def __post_init__(self) -> None:
        names = self.names
        names[HOSPITAL_ID] = HOSPITAL_NAME
        for d in self.departments.values():
            names[self.department_location(d.key)] = d.name
            for w in d.wards:
                names[self.ward_location(d.key, w.key)] = f"{d.name} – {w.label}"
                for r in w.rooms:
                    names[f"{self.ward_location(d.key, w.key)}-{r}"] = f"Phòng {r}"
        for b in self.beds:
            names[b.id] = b.name
        for c in self.clinics.values():
            names[c.id] = c.plan.name
        for key, location in self.rooms.items():
            names[location] = next(r.name for d in self.departments.values() for r in d.rooms if r.key == key)

    @property
    def organization(self) -> dict[str, str]:
        return ref("Organization", HOSPITAL_ID, HOSPITAL_NAME)

    def department_location(self, key: str) -> str:
        return f"{HOSPITAL_ID}-{key}"

    def ward_location(self, key: str, ward: str) -> str:
        return f"{HOSPITAL_ID}-{key}-{ward}"

    def staff_of(self, department: str, role: str) -> list[Staff]:
        return [s for s in self.staff if s.department == department and s.role == role]

    def beds_of(self, department: str) -> list[Bed]:
        return [b for b in self.beds if b.department == department]

    def location_name(self, location_id: str) -> str:
        return self.names.get(location_id, location_id)


def build_hospital(rng: random.Random) -> Hospital:
    """The hospital's structure and staff (names drawn from rng)."""
    beds: list[Bed] = []
    clinics: dict[str, Clinic] = {}
    staff: list[Staff] = []
    rooms: dict[str, str] = {}
    for d in DEPARTMENTS:
        for w in d.wards:
            ward_id = f"{HOSPITAL_ID}-{d.key}-{w.key}"
            for r in w.rooms:
                room_id = f"{ward_id}-{r}"
                beds += [Bed(f"{room_id}-{b}", f"Giường {r}-{b}", room_id, ward_id, d.key)
                         for b in range(1, w.beds_per_room + 1)]
        for c in d.clinics:
            clinics[c.key] = Clinic(f"{HOSPITAL_ID}-pk-{c.key}", f"{HOSPITAL_ID}-dv-{c.key}", c)
        for room in d.rooms:
            rooms[room.key] = f"{HOSPITAL_ID}-{d.key}-{room.key}"
    n = 0
    for d in DEPARTMENTS:
        for role, count, prefix, title in d.staff:
            for i in range(count):
                n += 1
                female_share = 0.85 if role == "nurse" else 0.6 if role in ("pharmacist", "receptionist") else 0.45
                gender = "female" if rng.random() < female_share else "male"
                name = random_name(rng, gender, rng.randint(1965, 1998))
                location, service = _workplace(d, role, i, clinics, rooms)
                job = title
                if i == 0 and role in ("physician", "nurse") and d.wards:
                    job = "Trưởng khoa" if role == "physician" else f"{title} trưởng"
                staff.append(Staff(f"{HOSPITAL_ID}-nv{n:03d}", f"{HOSPITAL_ID}-nv{n:03d}-vt", role, d.key, name,
                                   gender, _degree(rng, prefix, role), job, location, service))
    return Hospital({d.key: d for d in DEPARTMENTS}, beds, clinics, staff, rooms)


def _degree(rng: random.Random, prefix: str, role: str) -> str:
    if role in ("physician", "radiologist") and prefix == "BS.":
        return weighted(rng, (("BS.", 3), ("BSCKI.", 3), ("ThS.BS.", 2), ("BSCKII.", 1)))
    return prefix


def _workplace(d: DepartmentPlan, role: str, i: int, clinics: dict[str, Clinic],
               rooms: dict[str, str]) -> tuple[str | None, str | None]:
    """Where a staff member works: their clinic, service room or department."""
    if d.clinics and role == "physician":
        c = clinics[d.clinics[i % len(d.clinics)].key]
        return c.id, c.service
    if d.rooms:
        room = d.rooms[i % len(d.rooms)] if role != "receptionist" else d.rooms[0]
        return rooms[room.key], None
    if d.type is None:
        return None, None
    return f"{HOSPITAL_ID}-{d.key}", None


# -- FHIR resources -----------------------------------------------------------------------------------------------


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _location(rid: str, name: str, physical: str, part_of: str | None, org: str, type_: tuple[str, str] | None,
              **extra: Any) -> dict[str, Any]:
    loc: dict[str, Any] = {"resourceType": "Location", "id": rid, "status": "active", "name": name,
                           "mode": "instance"}
    if type_:
        loc["type"] = [{"coding": [_coding(ROLE_CODE, *type_)]}]
    loc["physicalType"] = {"coding": [_coding(PHYSICAL_TYPE, physical, PHYSICAL_DISPLAY[physical])]}
    loc["managingOrganization"] = ref("Organization", org)
    if part_of:
        loc["partOf"] = ref("Location", part_of)
    loc.update(extra)
    return loc


OPENING_HOURS = [
    {"daysOfWeek": ["mon", "tue", "wed", "thu", "fri"], "availableStartTime": "07:00:00",
     "availableEndTime": "16:30:00"},
    {"daysOfWeek": ["sat"], "availableStartTime": "07:00:00", "availableEndTime": "11:30:00"},
]


def hospital_organization() -> dict[str, Any]:
    """The hospital Organization, with the seed marker identifier."""
    commune = admin_units.commune(HOSPITAL_COMMUNE)
    assert commune is not None
    return {
        "resourceType": "Organization", "id": HOSPITAL_ID,
        "identifier": [{"use": "secondary", "system": SEED_MARKER_SYSTEM, "value": HOSPITAL_ID}],
        "active": True,
        "type": [{"coding": [_coding(ORG_TYPE, "prov", "Healthcare Provider")], "text": "Bệnh viện đa khoa tỉnh"}],
        "name": HOSPITAL_NAME, "alias": ["BVĐK Sante", "Sante General Hospital"],
        "telecom": [{"system": "phone", "value": "02383844000", "use": "work"},
                    {"system": "email", "value": "lienhe@bvdksante.example", "use": "work"}],
        "address": [admin_units.fhir_address(HOSPITAL_LINE, HOSPITAL_COMMUNE, use="work")],
    }


def hospital_resources(h: Hospital, bed_status: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Every resource of the facility but the hospital Organization; beds take their status from bed_status
    (bed id -> v2-0116 code; U when absent)."""
    commune = admin_units.commune(HOSPITAL_COMMUNE)
    assert commune is not None
    site_extra: dict[str, Any] = {
        "alias": ["BVĐK Sante"], "description": "Cơ sở chính",
        "telecom": [{"system": "phone", "value": "02383844000", "use": "work"}],
        "address": admin_units.fhir_address(HOSPITAL_LINE, HOSPITAL_COMMUNE, use="work"),
        "hoursOfOperation": [{"allDay": True}],
    }
    if commune.lat is not None and commune.lon is not None:
        site_extra["position"] = {"latitude": commune.lat, "longitude": commune.lon}
    yield _location(HOSPITAL_ID, HOSPITAL_NAME, "si", None, HOSPITAL_ID, ("HOSP", "Hospital"), **site_extra)
    for d in h.departments.values():
        org_id = f"{HOSPITAL_ID}-{d.key}"
        yield {"resourceType": "Organization", "id": org_id, "active": True,
               "type": [{"coding": [_coding(ORG_TYPE, "dept", "Hospital Department")]}], "name": d.name,
               "partOf": h.organization}
        if d.type is None:
            continue
        dept_loc = h.department_location(d.key)
        yield _location(dept_loc, d.name, "wi", HOSPITAL_ID, org_id, d.type)
        for w in d.wards:
            ward_id = h.ward_location(d.key, w.key)
            yield _location(ward_id, f"{d.name} – {w.label}", "wa", dept_loc, org_id, ("HU", "Hospital unit"))
            for r in w.rooms:
                yield _location(f"{ward_id}-{r}", f"Phòng {r}", "ro", ward_id, org_id, None,
                                description=f"{d.name}, {w.label}")
        for room in d.rooms:
            yield _location(h.rooms[room.key], room.name, "ro", dept_loc, org_id, room.type,
                            hoursOfOperation=[{"allDay": True}] if d.key in ("xet-nghiem", "duoc") else
                            _hours())
        for c in d.clinics:
            clinic = h.clinics[c.key]
            yield _location(clinic.id, c.name, "ro", dept_loc, org_id, c.type, hoursOfOperation=_hours(),
                            alias=[f"Phòng khám {c.ticket}"])
    for b in h.beds:
        status = bed_status.get(b.id, "U")
        yield _location(b.id, b.name, "bd", b.room, f"{HOSPITAL_ID}-{b.department}", None,
                        operationalStatus=_coding(BED_STATUS, status, BED_STATUS_DISPLAY[status]))
    yield from _services(h)
    for s in h.staff:
        yield from _staff_resources(h, s)


def _hours() -> list[dict[str, Any]]:
    return [{"daysOfWeek": o["daysOfWeek"], "openingTime": o["availableStartTime"],
             "closingTime": o["availableEndTime"]} for o in OPENING_HOURS]


def _services(h: Hospital) -> Iterator[dict[str, Any]]:
    for c in h.clinics.values():
        p = c.plan
        category = "29" if p.key == "nhi" else "28" if p.key == "san" else "31" if p.key == "ngoai" else "27"
        yield {"resourceType": "HealthcareService", "id": c.service, "active": True, "providedBy": h.organization,
               "category": [{"coding": [_coding(SERVICE_CATEGORY, category, _CATEGORY[category])]}],
               "type": [{"text": p.service}], "specialty": [{"coding": [_coding(SNOMED, *p.specialty)]}],
               "location": [ref("Location", c.id, p.name)], "name": p.service,
               "comment": f"{p.name}, Khoa Khám bệnh – số thứ tự bắt đầu bằng {p.ticket}",
               "appointmentRequired": False, "availableTime": OPENING_HOURS}
    for key, name, category, location in (
        ("cap-cuu", "Cấp cứu 24/24", "14", h.department_location("cap-cuu")),
        ("xet-nghiem", "Xét nghiệm", "26", h.rooms["lay-mau"]),
        ("cdha", "Chẩn đoán hình ảnh", "30", h.department_location("cdha")),
        ("nha-thuoc", "Nhà thuốc bệnh viện", "35", h.rooms["nha-thuoc"]),
    ):
        yield {"resourceType": "HealthcareService", "id": f"{HOSPITAL_ID}-dv-{key}", "active": True,
               "providedBy": h.organization,
               "category": [{"coding": [_coding(SERVICE_CATEGORY, category, _CATEGORY[category])]}],
               "location": [ref("Location", location)], "name": name,
               "availableTime": [{"allDay": True}] if key in ("cap-cuu", "nha-thuoc") else OPENING_HOURS}


_CATEGORY = {"14": "Emergency Department", "26": "Specialist Clinical Pathology", "27": "Specialist Medical",
             "28": "Specialist Obstetrics & Gynecology", "29": "Specialist Paediatric",
             "30": "Specialist Radiology/Imaging", "31": "Specialist Surgical", "35": "Hospital"}


def _staff_resources(h: Hospital, s: Staff) -> Iterator[dict[str, Any]]:
    number = int(s.practitioner.rsplit("nv", 1)[1])
    name = s.name.fhir()
    if s.prefix:
        name["prefix"] = [s.prefix]
    d = h.departments[s.department]
    practitioner: dict[str, Any] = {
        "resourceType": "Practitioner", "id": s.practitioner, "active": True, "name": [name],
        "telecom": [{"system": "phone", "value": random_phone(random.Random(s.practitioner)), "use": "work"}],
        "gender": s.gender,
    }
    if s.role not in ("receptionist", "manager", "admin", "public_health"):
        practitioner["identifier"] = [{"use": "official", "system": PRACTISING_CERTIFICATE_SYSTEM,
                                       "value": f"{number:06d}/NA-CCHN"}]
        practitioner["qualification"] = [{"code": {"text": s.title}, "issuer": {"display": "Sở Y tế Nghệ An"}}]
    yield practitioner
    codings = [_coding(STAFF_ROLE_SYSTEM, s.role, s.role)]
    if s.role in _HL7_ROLE:
        codings.append(_coding(PRACTITIONER_ROLE, _HL7_ROLE[s.role], _HL7_ROLE[s.role].title()))
    codes = [{"coding": codings, "text": s.title}]
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole", "id": s.role_id, "active": True,
        "practitioner": s.reference(), "organization": ref("Organization", f"{HOSPITAL_ID}-{s.department}", d.name),
        "code": codes,
    }
    specialty = d.specialty
    if s.service:
        specialty = next(c.plan.specialty for c in h.clinics.values() if c.service == s.service)
    if specialty:
        role["specialty"] = [{"coding": [_coding(SNOMED, *specialty)]}]
    if s.location:
        role["location"] = [ref("Location", s.location, h.location_name(s.location))]
    if s.service:
        role["healthcareService"] = [ref("HealthcareService", s.service)]
    yield role

