// Writes tests/data/units-300.csv: 300 made-up judicial units of a court in
// Acre (timezone America/Rio_Branco), for the browser test. Deterministic:
// running it again gives the same file. Run: node tests/browser/make-sample.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const cities = [
  'Rio Branco', 'Cruzeiro do Sul', 'Sena Madureira', 'Tarauacá', 'Feijó', 'Brasiléia',
  'Senador Guiomard', 'Plácido de Castro', 'Xapuri', 'Epitaciolândia', 'Mâncio Lima',
  'Rodrigues Alves', 'Porto Acre', 'Acrelândia', 'Capixaba', 'Bujari', 'Marechal Thaumaturgo',
  'Porto Walter', 'Assis Brasil', 'Manoel Urbano', 'Jordão', 'Santa Rosa do Purus',
];
const kinds = [
  ['Vara Cível', 'ª'], ['Vara Criminal', 'ª'], ['Vara de Família', 'ª'],
  ['Juizado Especial Cível', 'º'], ['Juizado Especial Criminal', 'º'],
  ['Vara da Fazenda Pública', 'ª'], ['Vara da Infância e da Juventude', 'ª'],
  ['Vara de Execuções Penais', 'ª'], ['Vara de Órfãos e Sucessões', 'ª'],
  ['Vara do Tribunal do Júri', 'ª'], ['Vara de Proteção à Mulher', 'ª'],
  ['Vara de Registros Públicos', 'ª'], ['Vara de Execução Fiscal', 'ª'],
];
// At Monday 2026-03-02 10:00 in Rio Branco these give: open, open, open,
// opens today 12:00, opens tomorrow, opens Wednesday, open, open.
const hours = [
  'seg-sex 08:00-14:00',
  'seg-sex 07:00-13:00',
  'seg-sex 08:00-12:00 13:00-18:00',
  'seg-sex 12:00-18:00',
  'ter-qui 08:00-12:00',
  'qua-sex 08:00-13:00',
  'seg, qua e sex 7h30 às 13h30',
  'seg-sex 08:00-12:00 14:00-18:00; sáb 08:00-12:00',
];

const slug = (s) => s.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
  .replace(/[^a-z0-9]+/g, '');
const quote = (s) => (/[";\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s);

const rows = [['nome', 'cidade', 'codigo_cnj', 'sala', 'horario', 'telefone', 'email', 'observacao']];
for (let i = 0; i < 300; i++) {
  const city = cities[i % cities.length];
  const [kind, mark] = kinds[Math.floor(i / cities.length) % kinds.length];
  const n = Math.floor(i / (cities.length * kinds.length)) + 1;
  const name = `${n}${mark} ${kind} de ${city}`;
  const code = i % 5 === 4 ? '' : String(100000 + i * 37);
  const room = i % 50 === 7 ? `balcao-${i}` : '';
  const phone = i % 3 === 0 ? '' : `(68) 3${String(211 + (i % 700)).padStart(3, '0')}-${String(1000 + i).slice(-4)}`;
  const email = i % 4 === 1 ? '' : `${slug(kind).slice(0, 12)}${n}.${slug(city).slice(0, 10)}@tjac.example.jus.br`;
  const note = i % 11 === 0 ? 'Tenha em mãos o número do processo; atendimento prioritário a idosos' : '';
  rows.push([name, city, code, room, hours[i % hours.length], phone, email, note]);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '..', 'data', 'units-300.csv');
fs.writeFileSync(out, rows.map((r) => r.map(quote).join(';')).join('\n') + '\n');
console.log(`wrote ${out} (${rows.length - 1} units)`);
