// Balcão page: recomputes each unit's status in the court's timezone, filters
// the list, and asks the citizen's name before opening the Jitsi room.
// Mirrors src/units/status.rs; the browser test checks that both agree.
(function () {
  'use strict';

  var dados = JSON.parse(document.getElementById('dados-balcao').textContent);
  var fuso = dados.timezone;
  var fechados = dados.closed;
  var NOMES = ['segunda', 'terça', 'quarta', 'quinta', 'sexta', 'sábado', 'domingo'];
  var HORIZONTE = 400;

  function doisDigitos(n) { return (n < 10 ? '0' : '') + n; }
  function hora(min) { return doisDigitos(Math.floor(min / 60)) + ':' + doisDigitos(min % 60); }

  // Per unit, per weekday (Monday first), intervals in minutes since midnight.
  var horarios = dados.units.map(function (u) {
    return u.hours.map(function (dia) {
      return dia.map(function (i) { return { inicio: i[0], fim: i[1] }; });
    });
  });

  // A civil date as a count of days, so adding days needs no calendar.
  function dia(ano, mes, d) { return Math.round(Date.UTC(ano, mes - 1, d) / 86400000); }
  function isoDe(n) { return new Date(n * 86400000).toISOString().slice(0, 10); }
  function diaDaSemana(n) { return (new Date(n * 86400000).getUTCDay() + 6) % 7; }

  // The court-local wall clock at an instant, through the browser's tz data.
  var relogioDoFuso = new Intl.DateTimeFormat('en-US', {
    timeZone: fuso, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit'
  });
  function localDe(instante) {
    var p = {};
    relogioDoFuso.formatToParts(instante).forEach(function (x) { p[x.type] = Number(x.value); });
    return { dia: dia(p.year, p.month, p.day), minuto: (p.hour % 24) * 60 + p.minute };
  }

  // ?agora=2026-03-02T10:00 (court-local) or ?agora=2026-03-02T15:00Z (an
  // instant), or window.BALCAO_AGORA set before the page loads: a pinned clock.
  function agora() {
    var fixo = new URLSearchParams(location.search).get('agora') || window.BALCAO_AGORA;
    if (fixo) {
      if (/(Z|[+-]\d\d:?\d\d)$/.test(fixo)) {
        var instante = new Date(fixo);
        if (!isNaN(instante)) return localDe(instante);
      }
      var m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)/.exec(fixo);
      if (m) {
        return { dia: dia(+m[1], +m[2], +m[3]), minuto: +m[4] * 60 + +m[5] };
      }
    }
    return localDe(new Date());
  }

  function intervalos(indice, d) {
    if (Object.prototype.hasOwnProperty.call(fechados, isoDe(d))) return [];
    return horarios[indice][diaDaSemana(d)];
  }

  function situacao(indice, t) {
    var hoje = intervalos(indice, t.dia);
    for (var i = 0; i < hoje.length; i++) {
      if (hoje[i].inicio <= t.minuto && t.minuto < hoje[i].fim) return { aberto: true, ate: hoje[i].fim };
    }
    for (i = 0; i < hoje.length; i++) {
      if (hoje[i].inicio > t.minuto) return { aberto: false, dia: t.dia, minuto: hoje[i].inicio };
    }
    for (var k = 1; k <= HORIZONTE; k++) {
      var outro = intervalos(indice, t.dia + k);
      if (outro.length) return { aberto: false, dia: t.dia + k, minuto: outro[0].inicio };
    }
    return { aberto: false, dia: null };
  }

  function quandoAbre(s, t) {
    var dias = s.dia - t.dia;
    var h = hora(s.minuto);
    var nome = NOMES[diaDaSemana(s.dia)];
    if (dias === 0) return 'hoje às ' + h;
    if (dias === 1) return 'amanhã às ' + h;
    if (dias <= 6) return nome + ' às ' + h;
    var iso = isoDe(s.dia);
    return nome + ', ' + iso.slice(8, 10) + '/' + iso.slice(5, 7) + ', às ' + h;
  }

  function falado(lista) {
    var partes = lista.map(function (i) { return hora(i.inicio) + ' às ' + hora(i.fim); });
    if (partes.length <= 1) return partes.join('');
    return partes.slice(0, -1).join(', ') + ' e ' + partes[partes.length - 1];
  }

  function textoDeHoje(indice, d) {
    var motivo = fechados[isoDe(d)];
    if (Object.prototype.hasOwnProperty.call(fechados, isoDe(d))) return 'Hoje: fechado (' + motivo + ')';
    var lista = horarios[indice][diaDaSemana(d)];
    return lista.length ? 'Hoje: ' + falado(lista) : 'Hoje: sem atendimento';
  }

  var cartoes = Array.prototype.slice.call(document.querySelectorAll('[data-indice]'));

  function atualizar() {
    var t = agora();
    var iso = isoDe(t.dia);
    var relogio = document.getElementById('relogio');
    relogio.textContent = 'Situação em ' + NOMES[diaDaSemana(t.dia)] + ', ' + iso.slice(8, 10) + '/' +
      iso.slice(5, 7) + '/' + iso.slice(0, 4) + ', às ' + hora(t.minuto) + '.';
    var aviso = document.getElementById('aviso-dia');
    var fechadoHoje = Object.prototype.hasOwnProperty.call(fechados, iso);
    aviso.hidden = !fechadoHoje;
    aviso.textContent = fechadoHoje ? 'Hoje não há atendimento: ' + fechados[iso] + '.' : '';
    cartoes.forEach(function (cartao) {
      var indice = Number(cartao.getAttribute('data-indice'));
      var s = situacao(indice, t);
      var linha = cartao.querySelector('[data-situacao]');
      var link = cartao.querySelector('[data-entrar]');
      var fechado = cartao.querySelector('[data-fechado]');
      var texto, botao;
      if (s.aberto) {
        texto = 'Aberto agora · até ' + hora(s.ate);
      } else if (s.dia !== null) {
        var quando = quandoAbre(s, t);
        texto = 'Fechado · abre ' + quando;
        botao = 'Abre ' + quando;
      } else {
        texto = 'Fechado · sem atendimento previsto';
        botao = 'Sem atendimento previsto';
      }
      if (linha.textContent !== texto) linha.textContent = texto;
      linha.className = 'situacao ' + (s.aberto ? 'aberto' : 'fechado');
      link.hidden = !s.aberto;
      fechado.hidden = s.aberto;
      if (!s.aberto && fechado.textContent !== botao) fechado.textContent = botao;
      var hoje = textoDeHoje(indice, t.dia);
      var campoHoje = cartao.querySelector('[data-hoje]');
      if (campoHoje.textContent !== hoje) campoHoje.textContent = hoje;
    });
  }

  // Search: every word typed must appear in the unit's name or city, accents
  // and case ignored.
  function dobrar(s) {
    return s.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
  }
  var busca = document.getElementById('busca');
  var campo = document.getElementById('q');
  var contagem = document.getElementById('contagem');
  var nada = document.getElementById('nada');
  var cidades = Array.prototype.slice.call(document.querySelectorAll('[data-cidade]'));

  function filtrar() {
    var palavras = dobrar(campo.value).split(/\s+/).filter(Boolean);
    var visiveis = 0;
    cartoes.forEach(function (cartao) {
      var alvo = cartao.getAttribute('data-busca');
      var mostra = palavras.every(function (p) { return alvo.indexOf(p) !== -1; });
      cartao.hidden = !mostra;
      if (mostra) visiveis++;
    });
    cidades.forEach(function (c) {
      c.hidden = !c.querySelector('[data-indice]:not([hidden])');
    });
    nada.hidden = visiveis !== 0;
    var texto;
    if (!palavras.length) texto = cartoes.length + ' unidades';
    else if (visiveis === 0) texto = 'Nenhuma unidade encontrada';
    else if (visiveis === 1) texto = '1 unidade encontrada';
    else texto = visiveis + ' unidades encontradas';
    contagem.textContent = texto;
  }
  busca.hidden = false;
  busca.addEventListener('submit', function (e) { e.preventDefault(); });
  campo.addEventListener('input', filtrar);

  // Before entering: the name, carried into Jitsi through the URL fragment it
  // reads (#userInfo.displayName="..."), so the prejoin screen is filled in.
  var dialogo = document.getElementById('entrada');
  var formulario = document.getElementById('entrada-form');
  var nome = document.getElementById('entrada-nome');
  var erro = document.getElementById('entrada-erro');
  var destino = null;
  var origem = null;

  document.addEventListener('click', function (e) {
    var link = e.target.closest && e.target.closest('[data-entrar]');
    if (!link || typeof dialogo.showModal !== 'function') return;
    e.preventDefault();
    destino = link.getAttribute('href');
    origem = link;
    var cartao = link.closest('[data-indice]');
    document.getElementById('entrada-unidade').textContent =
      dados.units[Number(cartao.getAttribute('data-indice'))].name;
    erro.hidden = true;
    nome.removeAttribute('aria-invalid');
    dialogo.showModal();
    nome.focus();
  });
  formulario.addEventListener('submit', function (e) {
    e.preventDefault();
    var valor = nome.value.trim().replace(/\s+/g, ' ');
    if (!valor) {
      erro.hidden = false;
      nome.setAttribute('aria-invalid', 'true');
      nome.focus();
      return;
    }
    location.href = destino + '#userInfo.displayName=' + encodeURIComponent(JSON.stringify(valor));
  });
  document.getElementById('entrada-cancelar').addEventListener('click', function () {
    dialogo.close();
  });
  dialogo.addEventListener('close', function () {
    if (origem) origem.focus();
  });

  atualizar();
  filtrar();
  setInterval(atualizar, 30000);
})();
